"""BERT masked-LM training throughput: our ``Bert`` against HF ``BertForMaskedLM`` of the same
size, on the same masked batches, in the same plain training loop (forward, backward, clip,
AdamW step, schedule).

    python bench/bench_bert.py                       # synthetic token ids, the default preset
    python bench/bench_bert.py --data data           # real batches from data/tokens/wordpiece

Tokens are real (non-padding) tokens. The CPU may be shared with other work: contestants
alternate step by step (A, B, B, A, ...) on the same batch and the median step throughput is
reported, so a busy neighbour slows both alike. Where the gain comes from: the MLM head projects only the ~15% of positions that
have a loss onto the vocabulary (HF projects every position), and attention runs through
SDPA with the padding mask (HF's default is SDPA too).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from omegaconf import OmegaConf

from llmworks.config import compose_config, typed
from llmworks.families.bert.data import MLMCollator, MLMData
from llmworks.families.bert.hf import to_hf
from llmworks.families.bert.model import Bert, BertConfig
from llmworks.families.bert.settings import MLMDataConfig
from llmworks.training.optim import OptimConfig, configure_optimizer

# conf/bert/<preset>.yaml (default: the default's, with its 8192-token WordPiece vocabulary);
# set by --preset before anything is built
BERT = compose_config(["bert=default"]).bert
OPTIM = typed(OptimConfig, BERT.optim, "bert.optim")


def machine() -> str:
    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {cpu}"
    return (
        f"{dev}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def real_batches(data_dir: Path, batch_size: int, seq_len: int, n: int) -> tuple[list[dict], int]:
    cfg = typed(
        MLMDataConfig,
        OmegaConf.merge(BERT.data, {"max_seq_len": seq_len, "batch_size": batch_size}),
        "bert.data",
    )
    data = MLMData(
        data_dir / "tokens" / "wordpiece",
        data_dir / "tokenizers" / "wordpiece" / "tokenizer.json",
        cfg,
        seed=0,
    )
    torch.manual_seed(0)
    loader = iter(data.train_dataloader())
    return [next(loader) for _ in range(n)], data.vocab_size


def synthetic_batches(batch_size: int, seq_len: int, n: int, vocab: int = 8192) -> list[dict]:
    """Zipf-like ids; lengths from seq_len/2 to seq_len, so each batch carries some padding."""
    g = torch.Generator().manual_seed(0)
    collator = MLMCollator(
        vocab,
        pad_id=0,
        mask_id=4,
        special_ids=range(6),
        mask_rate=BERT.data.mask_rate,
        whole_word=False,
    )
    ranks = torch.arange(1, vocab - 5, dtype=torch.float)
    out = []
    for _ in range(n):
        lengths = torch.randint(seq_len // 2, seq_len + 1, (batch_size,), generator=g)
        seqs = [
            torch.cat(
                [
                    torch.tensor([2]),
                    6 + torch.multinomial(1 / ranks, int(t) - 2, True, generator=g),
                    torch.tensor([3]),
                ]
            )
            for t in lengths
        ]
        out.append(collator([{"index": i, "input_ids": s} for i, s in enumerate(seqs)]))
    return out


class Trainee:
    """One contestant: a model with its AdamW + schedule, stepped one batch at a time."""

    def __init__(self, model: torch.nn.Module, kind: str, n_steps: int):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model, self.kind = model.to(self.device).train(), kind
        opt = configure_optimizer(model, OPTIM, n_steps)
        self.optimizer, self.sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]

    def step(self, batch: dict) -> float:
        """Seconds for one training step (forward, backward, clip, AdamW, schedule); on a GPU
        under bf16 autocast, as ``trainer=gpu`` trains (both contestants alike)."""
        start = time.perf_counter()
        b = {k: v.to(self.device) for k, v in batch.items()}
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device == "cuda"
            else contextlib.nullcontext()
        )
        with autocast:
            loss = self.loss(b)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.sched.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def loss(self, b: dict) -> torch.Tensor:
        if self.kind == "hf":
            loss = self.model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"].long(),
                labels=b["labels"],
            ).loss
        elif self.kind == "full_head":  # ablation: our model, vocabulary logits at every position
            logits = self.model(b["input_ids"], b["attention_mask"])[0]
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["labels"].flatten())
        else:
            loss = self.model(b["input_ids"], b["attention_mask"], labels=b["labels"])[1]
        return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="paths.data holding tokens/wordpiece")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the batches")
    parser.add_argument("--steps", type=int, default=30, help="batches per pass")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--preset", default="default", help="conf/bert/<preset> (bert_base)")
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="add our model with the head on every position (HF's way)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global BERT, OPTIM
    BERT = compose_config([f"bert={args.preset}"]).bert
    OPTIM = typed(OptimConfig, BERT.optim, "bert.optim")
    seq_len = BERT.data.max_seq_len
    if args.data:
        batches, vocab = real_batches(args.data, args.batch_size, seq_len, args.steps)
    else:
        # the default's 8192-token WordPiece; bert_base's as published (30522)
        vocab = 30522 if args.preset == "bert_base" else 8192
        batches = synthetic_batches(args.batch_size, seq_len, args.steps, vocab)
    cfg = typed(BertConfig, BERT.model, "bert.model", vocab_size=vocab, pad_id=0)
    padding = 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(
        b["attention_mask"].numel() for b in batches
    )

    torch.manual_seed(0)
    n = args.rounds * len(batches)
    contestants = {"ours": Trainee(Bert(cfg), "ours", n), "hf": Trainee(to_hf(Bert(cfg)), "hf", n)}
    if args.ablate:
        contestants["ours_full_head"] = Trainee(Bert(cfg), "full_head", n)
    # interleaved step by step (ours, hf, hf, ours, ...): a neighbour's burst of load lands on
    # both alike; the median step time is robust to the bursts that remain
    runs: dict[str, list[float]] = {k: [] for k in contestants}
    for r in range(args.rounds):
        for i, batch in enumerate(batches):
            order = (
                list(contestants)
                if (r * len(batches) + i) % 2 == 0
                else list(reversed(contestants))
            )
            for name in order:
                seconds = contestants[name].step(batch)
                if r > 0 or i >= args.warmup:
                    runs[name].append(int(batch["attention_mask"].sum()) / seconds)
        print(
            json.dumps(
                {"round": r} | {k: round(statistics.median(v)) for k, v in runs.items() if v}
            ),
            flush=True,
        )
    med = {k: statistics.median(v) for k, v in runs.items()}
    mean = {
        k: len(v) / sum(1 / x for x in v) for k, v in runs.items()
    }  # harmonic: total tokens / total time
    print(
        json.dumps(
            {
                "machine": machine(),
                "data": str(args.data or "synthetic"),
                "config": OmegaConf.to_container(BERT.model)
                | {"vocab_size": vocab, "batch_size": args.batch_size},
                "padding": round(padding, 3),
                "ours_tokens_per_s": round(med["ours"]),
                "hf_tokens_per_s": round(med["hf"]),
                "ratio": round(med["ours"] / med["hf"], 3),
                "ratio_of_means": round(mean["ours"] / mean["hf"], 3),
                **(
                    {
                        "full_head_tokens_per_s": round(med["ours_full_head"]),
                        "full_head_vs_hf": round(med["ours_full_head"] / med["hf"], 3),
                    }
                    if args.ablate
                    else {}
                ),
                "steps_timed": len(runs["ours"]),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
