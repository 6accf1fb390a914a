"""Kill each training stage with SIGKILL under `dvc repro` once it has a checkpoint, rerun the
same `dvc repro`, and compare its final validation metric with an uninterrupted run of the
same params: the figures of bench/README.md ("Crash and resume"). Same procedure as
tests/test_crash_safety.py, which asserts it.

    python bench/crash_resume.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_crash_safety import LONGER, kill_when, start  # noqa: E402

from conftest import copy_repo, sh  # noqa: E402

MONITOR = {"word2vec": "val_loss", "bert": "val_mlm_loss", "gpt": "val_loss"}


def main() -> None:
    root = copy_repo(Path(tempfile.mkdtemp()) / "llmworks")
    sh(sys.executable, "-m", "llmworks.config", *LONGER, "--out", "params.yaml", cwd=root)
    sh("dvc", "repro", "encode@bpe", "encode@wordpiece", cwd=root)
    rows = []
    for family in ("word2vec", "bert", "gpt"):
        side = [f"paths.{p}={root / 'straight' / p}" for p in ("models", "runs", "metrics")]
        sh(sys.executable, "pipelines/train.py", "--config-dir", ".", "--config-name",
           "params", "hydra.run.dir=.", "hydra.output_subdir=null", f"family={family}", *side,
           cwd=root)  # fmt: skip
        straight = json.loads((root / "straight/metrics/train" / f"{family}.json").read_text())
        last = root / "runs" / family / "checkpoints" / "last.ckpt"
        proc = start(["dvc", "repro", f"train@{family}"], root)
        kill_when(proc, last.is_file)
        time.sleep(0.5)
        at = torch.load(last, weights_only=True)["global_step"]
        t0 = time.perf_counter()
        subprocess.run(
            ["dvc", "repro", f"train@{family}"], cwd=root, check=True, capture_output=True
        )
        seconds = time.perf_counter() - t0
        resumed = json.loads((root / "metrics" / "train" / f"{family}.json").read_text())
        m = MONITOR[family]
        rows.append((family, at, resumed["steps"], m, straight[m], resumed[m], seconds))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, params: {' '.join(LONGER)}\n")
    print(
        "| stage | resumed from step | steps | metric | uninterrupted | killed + resumed | difference | rerun seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for f, at, steps, m, a, b, sec in rows:
        print(
            f"| `train@{f}` | {at} | {steps} | {m} | {a:.6f} | {b:.6f} | {abs(a - b):.1e} | {sec:.1f} |"
        )


if __name__ == "__main__":
    main()
