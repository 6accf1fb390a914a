"""Where a training step of the default GPT or BERT spends its time: ``torch.profiler`` over
the stage's own model, optimizer and batches (the default pipeline's encoded data).

    python bench/profile_train.py gpt  [--steps 30] [--warmup 5] [overrides...]
    python bench/profile_train.py bert --threads 2 bert.optim.name=adamw
    python bench/profile_train.py gpt --full-logits      # the loss as before 2026-12-05
    python bench/profile_train.py gpt --compile          # torch.compile of the model
    python bench/profile_train.py bert --direct-ns       # Muon without the Gram form

Prints, for the profiled steps, the share of wall time in each phase of a step (fetching
the batch, forward, backward, optimizer) and the operators with the most self CPU time,
as Markdown for bench/README.md. The step is the stage's: ``build`` from the composed
config (the same model, data module and optimizer as ``pipelines/train.py``), minus
Lightning's loop around it (whose overhead ``bench_gpt.py train`` measures apart).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from llmworks.config import compose_config
from llmworks.paths import Paths
from llmworks.spec import family
from llmworks.training import muon
from llmworks.training.optim import configure_optimizer

PHASES = ("data", "forward", "backward", "optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=["gpt", "bert"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. gpt.optim.name=adamw")
    parser.add_argument("--steps", type=int, default=30, help="profiled steps")
    parser.add_argument("--warmup", type=int, default=5, help="steps run before profiling")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--top", type=int, default=12, help="operators to list")
    parser.add_argument(
        "--full-logits",
        action="store_true",
        help="GPT: take the loss from the whole logits (as before 2026-12-05), not slice by slice",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument(
        "--direct-ns",
        action="store_true",
        help="Muon: the direct Newton-Schulz form on every matrix (as before 2026-12-05)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.direct_ns:
        muon.GRAM_ASPECT = math.inf

    cfg = compose_config([f"family={args.family}", *args.overrides])
    built = family(args.family).build(cfg, Paths.from_config(cfg))
    module, data = built.module, built.data
    module.log = lambda *a, **k: None  # no Trainer here to log to
    if args.full_logits and args.family != "gpt":
        parser.error("--full-logits: only GPT takes its loss slice by slice")
    if args.full_logits:  # the stage's step, with the loss taken from the whole logits
        forward = module.model.forward
        module.model.forward = lambda *a, **k: forward(*a, **{**k, "return_logits": True})
    if args.compile:
        module.model.compile()
    data.setup("fit")
    loader = data.train_dataloader()
    total = args.warmup + args.steps
    optimizer = configure_optimizer(
        module.model, module.optim, total, adamw_only=module.adamw_only()
    )["optimizer"]
    batches = iter(loader)

    def step(i: int) -> None:
        with record_function("data"):
            batch = next(batches)
        with record_function("forward"):
            loss = module.training_step(batch, i)
        with record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), 1.0)
        with record_function("optimizer"):
            optimizer.step()

    module.model.train()
    for i in range(args.warmup):
        step(i)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.warmup, total):
            step(i)
    seconds = time.perf_counter() - start
    events = prof.key_averages()
    phase = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in PHASES}
    print(
        f"{args.family}, optimizer {module.optim.name}, {torch.get_num_threads()} threads: "
        f"{args.steps} steps in {seconds:.1f} s ({seconds / args.steps * 1e3:.0f} ms/step, "
        "profiler on)\n"
    )
    print("| phase | ms/step | share |\n|---|---|---|")
    for name in PHASES:
        t = phase.get(name, 0.0)
        print(f"| {name} | {t / args.steps * 1e3:.1f} | {t / seconds:.0%} |")
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.key not in PHASES:
            by_op[e.key] += e.self_cpu_time_total / 1e6
    busy = sum(by_op.values())
    print("\n| operator (self CPU time) | ms/step | share of operator time |\n|---|---|---|")
    for name, t in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| `{name}` | {t / args.steps * 1e3:.1f} | {t / busy:.0%} |")


if __name__ == "__main__":
    main()
