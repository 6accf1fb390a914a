"""GPT benchmarks on the current machine (CPU or GPU), each comparison interleaved.

    python bench/bench_gpt.py train    # Lightning step vs a plain PyTorch loop (framework overhead)
    python bench/bench_gpt.py hf       # our GPT vs HF GPT2LMHeadModel of the same size, plain loop
    python bench/bench_gpt.py decode   # greedy, 256 new tokens: KV cache vs none vs HF generate
    python bench/bench_gpt.py mfu      # GPU: gpt2_124m, bf16, torch.compile; tokens/s, MFU

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
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from llmworks.config import compose_config, typed
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.families.gpt.module import CausalLM
from llmworks.generation import generate
from llmworks.spec import family
from llmworks.training.fit import Run, build_callbacks, build_trainer
from llmworks.training.optim import OptimConfig, configure_optimizer

# the presets of conf/gpt/ with an 8192-token BPE vocabulary (the default's)
VOCAB = 8192


def preset(name: str, **model) -> tuple[GPTConfig, OptimConfig]:
    g = compose_config([f"gpt={name}"]).gpt
    config = typed(GPTConfig, OmegaConf.merge(g.model, model), "gpt.model", vocab_size=VOCAB)
    return config, typed(OptimConfig, g.optim, "gpt.optim")


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


def fit_like_the_stage(
    module: CausalLM, loader: DataLoader, trainer_overrides: list[str], callbacks: list
) -> Path:
    """``trainer.fit`` as the train@gpt stage builds it -- the Trainer, callbacks (checkpoint,
    LR monitor, throughput) and CSV logger of conf/ -- on ``loader``, without validation.
    Returns the CSV log."""
    cfg = compose_config(["logger=none", *trainer_overrides])
    root = Path(tempfile.mkdtemp())
    run = Run(root, "bench", "bench", 0, None)
    schedule = OmegaConf.create(
        {
            "max_steps": len(loader),
            "gradient_clip_val": 1.0,
            "limit_val_batches": 0,
            "log_every_n_steps": 5,
        }
    )
    logger = CSVLogger(str(root), name="csv", version="0")
    trainer = build_trainer(
        cfg,
        schedule,
        build_callbacks(cfg, family("gpt"), run, module) + callbacks,
        [logger],
        root,
    )
    trainer.fit(module, train_dataloaders=loader)
    return Path(logger.log_dir) / "metrics.csv"


def lightning_tps(cfg: GPTConfig, optim: OptimConfig, loader: DataLoader, warmup: int) -> float:
    torch.manual_seed(0)
    module = CausalLM(cfg, optim, None, compile=False)
    clock = StepClock()
    fit_like_the_stage(
        module,
        loader,
        [
            "trainer=cpu" if not torch.cuda.is_available() else "trainer=gpu",
            "trainer.precision=32-true",
        ],
        [clock],
    )
    t = clock.times
    return (len(t) - 1 - warmup) * loader.batch_size * cfg.block_size / (t[-1] - t[warmup])


def plain_tps(
    model: torch.nn.Module, optim: OptimConfig, loader: DataLoader, warmup: int, hf: bool = False
) -> float:
    """The loop a user would write by hand: forward, backward, clip, AdamW step, schedule."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).train()
    opt = configure_optimizer(model, optim, len(loader))
    optimizer, sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    times = []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if hf:
            loss = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        else:
            loss = model(x, y, return_logits=False)[1]  # as the stage trains
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
    cfg, optim = preset("default")
    loader = batches(cfg, args.batch_size, args.steps)

    def plain():
        torch.manual_seed(0)
        return plain_tps(GPT(cfg), optim, loader, args.warmup)

    res = rounds(
        {"lightning": lambda: lightning_tps(cfg, optim, loader, args.warmup), "plain": plain},
        args.rounds,
    )
    res["ratio"] = res["lightning"] / res["plain"]
    return res


def bench_hf(args) -> dict:
    from llmworks.families.gpt.hf import to_hf

    cfg, optim = preset("default")
    loader = batches(cfg, args.batch_size, args.steps)

    def ours():
        torch.manual_seed(0)
        return plain_tps(GPT(cfg), optim, loader, args.warmup)

    def hf():
        torch.manual_seed(0)
        return plain_tps(to_hf(GPT(cfg)), optim, loader, args.warmup, hf=True)

    res = rounds({"ours": ours, "hf_gpt2": hf}, args.rounds)
    res["ratio"] = res["ours"] / res["hf_gpt2"]
    return res


def bench_decode(args) -> dict:
    """Greedy decoding of ``--new-tokens`` after a 16-token prompt, the default preset at block
    512: ours with the KV cache, ours re-running the whole context per token, and HF
    ``generate`` (greedy, its own cache) on the same model exported (``to_hf``: the
    default's ``Qwen3ForCausalLM``, a ``LlamaForCausalLM`` before 2026-12-05); with ``--compile`` also ours with the cache through
    ``torch.compile(model, dynamic=True)``, whose first call's seconds (the compilation) are
    reported apart. All must give the same tokens; tokens/s, prefill included."""
    from llmworks.families.gpt.hf import to_hf

    torch.manual_seed(0)
    cfg, _ = preset("default", block_size=512)
    model = GPT(cfg).eval()
    hf = to_hf(model)
    prompt = torch.randint(0, cfg.vocab_size, (1, 16))
    n = args.new_tokens
    contestants = {
        "cached": lambda: generate(model, prompt, n, temperature=0.0, use_cache=True),
        "uncached": lambda: generate(model, prompt, n, temperature=0.0, use_cache=False),
        "hf_generate": lambda: hf.generate(
            prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
            pad_token_id=0, eos_token_id=None,
        ),
    }  # fmt: skip
    if args.compile:
        compiled = torch.compile(model, dynamic=True)
        contestants["cached_compiled"] = lambda: generate(compiled, prompt, n, temperature=0.0)
    outs, first_s = [], {}
    for name, fn in contestants.items():  # a warm-up each (compiling), and the check
        t = time.perf_counter()
        outs.append(fn())
        first_s[name] = round(time.perf_counter() - t, 2)
    same = all(torch.equal(outs[0], o) for o in outs[1:])

    def timed(fn):
        def run() -> float:
            t = time.perf_counter()
            out = fn()
            assert out.shape[1] == prompt.shape[1] + n
            return n / (time.perf_counter() - t)

        return run

    res = rounds({k: timed(fn) for k, fn in contestants.items()}, args.rounds)
    res["speedup"] = res["cached"] / res["uncached"]
    res["cached_over_hf"] = res["cached"] / res["hf_generate"]
    res["same_tokens"] = same
    if args.compile:
        res["compiled_over_uncached"] = res["cached_compiled"] / res["uncached"]
        res["first_call_s"] = first_s
    if args.profile:
        res["profile"] = profile_step(model)
    return res


@torch.inference_mode()
def profile_step(model: GPT, position: int = 150, steps: int = 200) -> dict:
    """Where one KV-cached decode step's time goes (one token at ``position``): its time with
    no profiler attached; the aten ops it calls from Python and the ``nn.Module`` calls it
    makes (each costs microseconds of dispatch whatever its size); and how much of its
    profiled CPU time is in matrix products (``aten::mm``: the arithmetic proper)."""
    from torch.profiler import ProfilerActivity, profile

    model.set_kv_cache(1, position + 1)
    model(torch.zeros(1, position, dtype=torch.long))
    token = torch.zeros(1, 1, dtype=torch.long)

    def step() -> None:
        model(token, input_pos=position)

    for _ in range(20):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    step_ms = (time.perf_counter() - t) / steps * 1e3
    calls = [0]
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1)
    )
    step()
    hook.remove()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    model.clear_kv_cache()
    events = prof.events()
    ops = [e for e in events if e.name.startswith("aten::") and e.cpu_parent is None]
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.name == "aten::mm")
    return {
        "step_ms": round(step_ms, 3),
        "aten_ops_per_step": len(ops) / steps,
        "module_calls_per_step": calls[0],
        "mm_share_of_profiled_cpu": round(mm / total, 3),
    }


def matmul_peak(n: int = 8192, repeats: int = 10) -> float:
    """The chip's dense bf16 rate, measured: FLOP/s of an n x n x n bf16 matrix product (mean
    of ``repeats`` after three warm-ups). MFU is reported against this, in the same run, and
    against the datasheet figure Lightning's table holds."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1e3)


def bench_mfu(args) -> dict:
    """A GPT preset (gpt2_124m: vocabulary padded to 50304) in bf16 with torch.compile,
    trained as the stage trains it (``trainer=gpu``); tokens/s over the steps after
    ``--warmup`` (compilation included in those), and MFU = the model's training FLOPs per
    token (6N + attention, PaLM appendix B) x tokens/s over the matmul peak measured here.
    With ``--cpu`` (a dry run of the GPU check): the same path on the CPU, eager, no MFU."""
    on_gpu = torch.cuda.is_available() and not args.cpu
    g = compose_config([f"gpt={args.preset}"]).gpt
    vocab = 50304 if args.preset == "gpt2_124m" else VOCAB
    cfg = typed(GPTConfig, g.model, "gpt.model", vocab_size=vocab)
    loader = batches(cfg, args.batch_size, args.steps)
    module = CausalLM(cfg, typed(OptimConfig, g.optim, "gpt.optim"), None, compile=on_gpu)
    clock = StepClock()
    trainer = ["trainer=gpu"] if on_gpu else ["trainer=cpu"]
    fit_like_the_stage(module, loader, trainer, [clock])
    t = clock.times[args.warmup :]
    tokens_per_s = (len(t) - 1) * args.batch_size * cfg.block_size / (t[-1] - t[0])
    out = {
        "preset": args.preset,
        "batch": [args.batch_size, cfg.block_size],
        "params": module.model.num_params(non_embedding=False),
        "tokens_per_s": round(tokens_per_s),
    }
    if on_gpu:
        from lightning.fabric.utilities.throughput import get_available_flops

        achieved = module.model.flops_per_token(cfg.block_size) * tokens_per_s
        peak = matmul_peak()
        sheet = get_available_flops(torch.device("cuda"), torch.bfloat16)
        out |= {
            "model_tflops": round(achieved / 1e12, 1),
            "matmul_peak_tflops": round(peak / 1e12, 1),
            "mfu_vs_measured_peak": round(achieved / peak, 3),
            "datasheet_bf16_tflops": round(sheet / 1e12, 1) if sheet else None,
            "mfu_vs_datasheet": round(achieved / sheet, 3) if sheet else None,
            "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["train", "hf", "decode", "mfu", "all"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--preset", default="gpt2_124m", help="mfu: the conf/gpt/ preset")
    parser.add_argument("--cpu", action="store_true", help="mfu: dry run on the CPU")
    parser.add_argument("--profile", action="store_true", help="decode: profile one cached step")
    parser.add_argument("--compile", action="store_true", help="decode: also torch.compile'd")
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
