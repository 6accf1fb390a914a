"""GPT benchmarks on the current machine (CPU or GPU), each comparison interleaved.

    python bench/bench_gpt.py train    # Lightning step vs a plain PyTorch loop (framework overhead)
    python bench/bench_gpt.py hf       # our GPT vs HF GPT2LMHeadModel of the same size, plain loop
    python bench/bench_gpt.py decode   # KV-cache vs no-cache greedy decoding of 256 new tokens
    python bench/bench_gpt.py mfu      # GPU only: gpt2_124m, bf16, torch.compile

The CPU may be shared with other work: every comparison alternates its contestants in
rounds (A, B, A, B, ...) and reports medians, so a busy neighbour slows both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from llmworks.models.gpt import GPT, GPTConfig
from llmworks.training import build_trainer, configure_adamw
from llmworks.training.lm import CausalLM

OPTIM = {"lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.95], "warmup_steps": 10}
# the CPU default preset (conf/gpt/default.yaml) with its 8192-token BPE vocabulary
DEFAULT = dict(vocab_size=8192, block_size=128, n_layer=4, n_head=4, d_model=128)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    names = (
        [
            ln.split(":", 1)[1].strip()
            for ln in info.read_text().splitlines()
            if ln.startswith("model name")
        ]
        if info.is_file()
        else []
    )
    cpu = names[0] if names else cpu
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {cpu}"
    return (
        f"{dev}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"lightning {L.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def batches(cfg: GPTConfig, batch_size: int, n: int, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, cfg.vocab_size, (n * batch_size, cfg.block_size + 1), generator=g)
    return DataLoader(TensorDataset(data[:, :-1], data[:, 1:]), batch_size=batch_size)


class StepClock(L.Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def lightning_tps(cfg: GPTConfig, loader: DataLoader, warmup: int) -> float:
    torch.manual_seed(0)
    module = CausalLM.for_config(cfg, OPTIM)
    clock = StepClock()
    trainer = build_trainer(
        {"accelerator": "auto", "devices": 1},
        {
            "max_steps": len(loader),
            "gradient_clip_val": 1.0,
            "val_check_interval": None,
            "limit_val_batches": 0,
        },
        callbacks=[clock],
        default_root_dir=tempfile.mkdtemp(),
    )
    trainer.fit(module, train_dataloaders=loader)
    t = clock.times
    return (len(t) - 1 - warmup) * loader.batch_size * cfg.block_size / (t[-1] - t[warmup])


def plain_tps(model: torch.nn.Module, loader: DataLoader, warmup: int, hf: bool = False) -> float:
    """The loop a user would write by hand: forward, backward, clip, AdamW step, schedule."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    opt = configure_adamw(model, OPTIM, len(loader))
    optimizer, sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    times = []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if hf:
            loss = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        else:
            loss = model(x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sched.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return (len(times) - 1 - warmup) * loader.batch_size * x.shape[1] / (times[-1] - times[warmup])


def rounds(contestants: dict, n: int) -> dict[str, float]:
    results: dict[str, list[float]] = {k: [] for k in contestants}
    for r in range(n):
        order = list(contestants) if r % 2 == 0 else list(reversed(contestants))
        for name in order:
            results[name].append(contestants[name]())
    return {k: statistics.median(v) for k, v in results.items()} | {
        f"{k}_all": [round(x) for x in v] for k, v in results.items()
    }


def bench_train(args) -> dict:
    cfg = GPTConfig(**DEFAULT)
    loader = batches(cfg, args.batch_size, args.steps)

    def plain():
        torch.manual_seed(0)
        return plain_tps(GPT(cfg), loader, args.warmup)

    res = rounds(
        {"lightning": lambda: lightning_tps(cfg, loader, args.warmup), "plain": plain}, args.rounds
    )
    res["ratio"] = res["lightning"] / res["plain"]
    return res


def bench_hf(args) -> dict:
    from llmworks.export.hf_gpt import to_hf

    cfg = GPTConfig(**DEFAULT)
    loader = batches(cfg, args.batch_size, args.steps)

    def ours():
        torch.manual_seed(0)
        return plain_tps(GPT(cfg), loader, args.warmup)

    def hf():
        torch.manual_seed(0)
        return plain_tps(to_hf(GPT(cfg)), loader, args.warmup, hf=True)

    res = rounds({"ours": ours, "hf_gpt2": hf}, args.rounds)
    res["ratio"] = res["ours"] / res["hf_gpt2"]
    return res


def bench_decode(args) -> dict:
    torch.manual_seed(0)
    cfg = GPTConfig(**(DEFAULT | {"block_size": 512}))
    model = GPT(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (1, 16))
    n = args.new_tokens

    def timed(use_cache: bool):
        def run() -> float:
            t = time.perf_counter()
            out = model.generate(prompt, n, temperature=0.0, use_cache=use_cache)
            assert out.shape[1] == prompt.shape[1] + n
            return n / (time.perf_counter() - t)

        return run

    res = rounds({"cached": timed(True), "uncached": timed(False)}, args.rounds)
    res["speedup"] = res["cached"] / res["uncached"]
    return res


def bench_mfu(args) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("mfu needs a GPU")
    from llmworks.training.trainer import Throughput

    cfg = GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, d_model=768)
    loader = batches(cfg, args.batch_size, args.steps)
    module = CausalLM.for_config(cfg, OPTIM, compile=True)
    tp = Throughput(skip=args.warmup)
    trainer = build_trainer(
        {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"},
        {"max_steps": args.steps, "gradient_clip_val": 1.0, "limit_val_batches": 0},
        callbacks=[tp],
        default_root_dir=tempfile.mkdtemp(),
    )
    trainer.fit(module, train_dataloaders=loader)
    tps = tp.mean_tokens_per_s
    from llmworks.training.trainer import _peak_flops

    peak = _peak_flops(torch.device("cuda"))
    return {"tokens_per_s": tps, "mfu": module.flops_per_token() * tps / peak if peak else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["train", "hf", "decode", "mfu", "all"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    todo = ["train", "hf", "decode"] if args.what == "all" else [args.what]
    fns = {"train": bench_train, "hf": bench_hf, "decode": bench_decode, "mfu": bench_mfu}
    report = {"machine": machine(), "args": vars(args)}
    for name in todo:
        report[name] = fns[name](args)
        print(json.dumps({name: report[name]}), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
