"""The evaluate stage on the CPU and on the GPU, over the same trained models: wall time of
each and the largest difference between their metrics (the GPU path must give the CPU's
numbers, not just run).

    dvc repro train@gpt train@bert train@word2vec        # or the pipelines/ scripts
    python bench/bench_evaluate.py                       # paths of conf/paths (data/, models/)
    python bench/bench_evaluate.py experiment=smoke      # any Hydra overrides of the stage

Each device writes its own copy of the outputs under a temporary directory; W&B is off.
Sampled GPT completions are left out of the comparison: CPU and CUDA draw from different
random streams.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from llmworks.config import compose_config
from llmworks.evaluation.stage import evaluate_stage, flatten


def evaluate_on(device: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    cfg = compose_config([*overrides, "logger=none", f"evaluate.device={device}"])
    OmegaConf.update(cfg, "paths.metrics", str(out / device / "metrics"))
    OmegaConf.update(cfg, "paths.report", str(out / device / "report"))
    start = time.perf_counter()
    metrics = evaluate_stage(cfg)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return flatten(metrics), time.perf_counter() - start


def main() -> None:
    overrides = sys.argv[1:]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        runs = {d: evaluate_on(d, overrides, Path(tmp)) for d in devices}
        greedy = {
            d: [
                s["completion"]
                for s in json.loads((Path(tmp) / d / "report/assets/samples.json").read_text())[
                    "samples"
                ]
                if s["mode"] == "greedy"
            ]
            for d in devices
            if (Path(tmp) / d / "report/assets/samples.json").is_file()
        }
    result: dict = {d: {"seconds": round(t, 2)} for d, (_, t) in runs.items()}
    if len(devices) == 2:
        cpu, gpu = runs["cpu"][0], runs["cuda"][0]
        diffs = {
            k: abs(cpu[k] - gpu[k])
            for k in cpu
            if isinstance(cpu[k], int | float) and isinstance(gpu.get(k), int | float)
        }
        worst = sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
        result["largest_differences"] = worst
        result["speedup"] = round(runs["cpu"][1] / runs["cuda"][1], 2)
        result["greedy_samples_equal"] = greedy.get("cpu") == greedy.get("cuda")
        result["device"] = torch.cuda.get_device_name()
    result["cpu_metrics"] = {
        k: v for k, v in runs["cpu"][0].items() if k.startswith(("gpt/", "bert/", "repr"))
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
