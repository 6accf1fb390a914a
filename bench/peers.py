"""Our training stages against what a user would pick instead, at equal wall time, in one run.

    python bench/peers.py bert --peer-lr 1e-3 [overrides...]   # ours vs HF BertForMaskedLM + Trainer
    python bench/peers.py gpt  --peer-lr 3e-3 [overrides...]   # ours vs a plain nanoGPT-style loop

The peers train with AdamW; ``--peer-lr`` gives them AdamW's own learning rate, since ours
(Muon for the hidden matrices) trains at a higher one than AdamW takes.

Needs the encoded data of the default pipeline (``dvc repro encode``). Each run first times
our stage script end to end (``python pipelines/train.py family=<family>``, the whole process:
start-up, validation, saving and export included) with the given Hydra overrides, writing
into a scratch directory (the workspace's models stay as they are). The peer then trains
the same shape on the same token shards for that many seconds of pure training (a head
start: it pays for no start-up, validation or export), and both are scored by the same
code on the whole test split:

- BERT: both models as Hugging Face masked LMs (ours through its own export:
  ``RoFormerForMaskedLM`` for the rotary default, ``BertForMaskedLM`` with learned
  positions), on the test split's sequences masked once with the validation seed at
  ``eval_mask_rate``: masked-token accuracy and loss. The peer is ``BertForMaskedLM`` of the
  same width, depth and vocabulary, trained by HF ``Trainer`` with ``DataCollatorForLanguageModeling``
  (mask rate, learning rate, warmup, weight decay, betas and clipping as ours, HF's default
  linear decay, as many steps as fit the time, measured by a short probe run).
- GPT: our ``GPT`` class in both; the peer is trained like nanoGPT's ``train.py``: random
  windows from the memory-mapped train split, AdamW (decay on matrices only), linear warmup
  then cosine to a tenth of the peak (nanoGPT's ``min_lr``), gradient clipping, as many
  steps as fit the time. Both are scored by the evaluate stage's ``NextTokenScores`` over
  every test window: bits per byte.

Prints one JSON line per contestant and a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bench_gpt import machine  # the benches' one machine line (bench/ is on sys.path)

from llmworks.config import compose_config, typed
from llmworks.data.shards import open_shards
from llmworks.evaluation.scoring import score_batches
from llmworks.families.bert.data import IGNORE_INDEX, MLMData
from llmworks.families.bert.hf import to_hf
from llmworks.families.bert.model import Bert
from llmworks.families.bert.settings import MLMDataConfig
from llmworks.families.gpt.data import WindowDataModule
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.families.gpt.module import NextTokenScores
from llmworks.families.gpt.module import build as build_gpt
from llmworks.paths import Paths
from llmworks.training.optim import OptimConfig

REPO = Path(__file__).resolve().parents[1]


def run_ours(family: str, overrides: list[str], out: Path) -> float:
    """Our stage script, timed end to end; its outputs go under ``out``."""
    cmd = [
        sys.executable,
        str(REPO / "pipelines" / "train.py"),
        f"family={family}",
        f"paths.models={out / 'models'}",
        f"paths.runs={out / 'runs'}",
        f"paths.metrics={out / 'metrics'}",
        "logger=none",
        f"hydra.run.dir={out / 'hydra'}",
        *overrides,
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- BERT


def bert(overrides: list[str], out: Path, peer_lr: float | None) -> list[dict[str, Any]]:
    from transformers import (
        AutoModelForMaskedLM,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    cfg = compose_config(["bert=default", *overrides])
    b = cfg.bert
    seconds = run_ours("bert", overrides, out)
    ours_dir = out / "models" / "bert" / "hf"
    tok_json = REPO / "data" / "tokenizers" / str(b.tokenizer) / "tokenizer.json"
    data = MLMData(
        REPO / "data" / "tokens" / str(b.tokenizer),
        tok_json,
        typed(MLMDataConfig, b.data, "bert.data"),
        int(cfg.seed),
    )
    train = data.sequences("train")
    examples = [{"input_ids": train[i]["input_ids"].tolist()} for i in range(len(train))]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tok_json),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=float(b.data.mask_rate))
    optim = typed(OptimConfig, b.optim, "bert.optim")
    optim = replace(optim, lr=peer_lr or optim.lr)

    class StopAt(TrainerCallback):
        def __init__(self, limit: float):
            self.limit, self.start = limit, time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > self.limit:  # never clears max_steps' stop
                control.should_training_stop = True

    def hf_train(max_steps: int, limit: float) -> tuple[Any, int, float]:
        torch.manual_seed(int(cfg.seed))
        model = BertForMaskedLM(peer_config)  # fresh init
        args = TrainingArguments(
            output_dir=str(out / "hf"),
            max_steps=max_steps,
            per_device_train_batch_size=int(b.data.batch_size),
            learning_rate=optim.lr,
            weight_decay=optim.weight_decay,
            adam_beta1=optim.betas[0],
            adam_beta2=optim.betas[1],
            adam_epsilon=optim.eps,
            warmup_steps=min(optim.warmup_steps, max_steps // 2),
            max_grad_norm=float(b.train.gradient_clip_val),
            save_strategy="no",
            logging_steps=50,
            report_to=[],
            seed=int(cfg.seed),
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        stop = StopAt(limit)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=collator,
            callbacks=[stop],
        )
        trainer.train()
        return model, trainer.state.global_step, time.perf_counter() - stop.start

    # the peer is the BERT a user would pick: learned positions, post-LN, our shape
    shape = Bert.load(out / "models" / "bert").config
    peer_config = to_hf(Bert(replace(shape, pos="learned", norm="post"))).config
    _, probe_steps, probe_s = hf_train(12, 1e9)
    steps = max(1, int(seconds / (probe_s / probe_steps)))
    theirs, their_steps, their_s = hf_train(steps, seconds)
    ours = AutoModelForMaskedLM.from_pretrained(ours_dir)
    metrics_ours = json.loads((out / "metrics" / "train" / "bert.json").read_text())
    rows = [
        {"model": "ours (train@bert stage)", "steps": metrics_ours["steps"], "seconds": seconds}
        | mlm_scores(ours, data),
        {"model": "HF BertForMaskedLM + Trainer", "steps": their_steps, "seconds": their_s}
        | mlm_scores(theirs, data),
    ]
    return rows


@torch.no_grad()
def mlm_scores(model: Any, data: MLMData) -> dict[str, float]:
    """Masked-token accuracy and loss on the whole test split, masked with the validation seed."""
    model.eval()
    hits = loss = count = 0.0
    for batch in data.test_dataloader():
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long()
        ).logits
        sel = batch["labels"] != IGNORE_INDEX
        target = batch["labels"][sel]
        loss += F.cross_entropy(logits[sel], target, reduction="sum").item()
        hits += (logits[sel].argmax(-1) == target).sum().item()
        count += target.numel()
    return {"test_mlm_acc": hits / count, "test_mlm_loss": loss / count, "masked": int(count)}


# ----------------------------------------------------------------------------- GPT


NANOGPT_MIN_LR_RATIO = 0.1


def gpt(overrides: list[str], out: Path, peer_lr: float | None) -> list[dict[str, Any]]:
    cfg = compose_config(["gpt=default", *overrides])
    g = cfg.gpt
    seconds = run_ours("gpt", overrides, out)
    built = build_gpt(cfg, Paths.from_config(cfg))  # the stage's own model config and data
    data, config, optim = built.data, built.module.config, built.module.optim
    # nanoGPT's train.py decays to a tenth of the peak (min_lr), whatever our schedule does
    optim = replace(optim, lr=peer_lr or optim.lr, min_lr_ratio=NANOGPT_MIN_LR_RATIO)
    shards = open_shards(data.shards_root)
    ours = GPT.load(out / "models" / "gpt")
    theirs, steps, their_s = nanogpt_loop(
        config, optim, shards, int(g.data.batch_size), float(g.train.gradient_clip_val), seconds
    )
    metrics_ours = json.loads((out / "metrics" / "train" / "gpt.json").read_text())
    return [
        {"model": "ours (train@gpt stage)", "steps": metrics_ours["steps"], "seconds": seconds}
        | gpt_scores(ours, data),
        {"model": "plain nanoGPT-style loop", "steps": steps, "seconds": their_s}
        | gpt_scores(theirs, data),
    ]


def nanogpt_loop(
    config: GPTConfig, optim: OptimConfig, shards: Any, batch: int, clip: float, seconds: float
) -> tuple[GPT, int, float]:
    """nanoGPT's train.py, reduced to one process: the step budget is what fits ``seconds``
    at the speed a 10-step probe measured."""
    train = np.memmap(shards.root / "train.bin", dtype=np.dtype(shards.meta["dtype"]), mode="r")
    rng = np.random.default_rng(0)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = rng.integers(0, len(train) - config.block_size - 1, batch)
        x = torch.stack(
            [torch.from_numpy(train[i : i + config.block_size].astype(np.int64)) for i in ix]
        )
        y = torch.stack(
            [
                torch.from_numpy(train[i + 1 : i + 1 + config.block_size].astype(np.int64))
                for i in ix
            ]
        )
        return x, y

    def run(max_steps: int, limit: float) -> tuple[GPT, int, float]:
        torch.manual_seed(0)
        model = GPT(config)
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": optim.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
        warmup = min(optim.warmup_steps, max_steps // 2)
        min_lr = optim.lr * optim.min_lr_ratio

        def lr_at(it: int) -> float:
            if it < warmup:
                return optim.lr * (it + 1) / (warmup + 1)
            ratio = (it - warmup) / max(1, max_steps - warmup)
            return min_lr + 0.5 * (1 + math.cos(math.pi * min(ratio, 1.0))) * (optim.lr - min_lr)

        model.train()
        start, step = time.perf_counter(), 0
        while step < max_steps and time.perf_counter() - start < limit:
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            x, y = get_batch()
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
        return model, step, time.perf_counter() - start

    _, probe_steps, probe_s = run(10, 1e9)
    return run(max(1, int(seconds / (probe_s / probe_steps))), seconds)


@torch.no_grad()
def gpt_scores(model: GPT, data: WindowDataModule) -> dict[str, float]:
    scores = NextTokenScores(data.text_per_token("test"), moe=model.config.mlp == "moe")
    results = score_batches(model.eval(), scores, data.test_dataloader())
    return {
        f"test_{k}": v for k, v in results.items() if k in ("loss", "bpb", "word_ppl", "tokens")
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("family", choices=["bert", "gpt"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both contestants")
    parser.add_argument(
        "--peer-lr",
        type=float,
        default=None,
        help="the peer's AdamW learning rate (default: ours); with our Muon default give it "
        "AdamW's own best here: 3e-3 for GPT, 1e-3 for BERT (bench/README.md)",
    )
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.chdir(REPO)  # the pipeline's relative paths (data/...), as the stages see them
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        rows = (bert if args.family == "bert" else gpt)(args.overrides, Path(tmp), args.peer_lr)
    print(f"# {args.family}: {machine()}; overrides {args.overrides or 'none'}")
    for row in rows:
        print(json.dumps(row))
    keys = [k for k in rows[0] if k != "model"]
    print("| model | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for row in rows:
        cells = [
            f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in row.items() if k != "model"
        ]
        print(f"| {row['model']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
