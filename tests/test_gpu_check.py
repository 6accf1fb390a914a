"""bench/gpu_check.sh, dry-run on the CPU: `prepare` builds the folder that travels to the GPU
machine (smoke shards and tokenizers; the wheels are left out, they need the registry), and
`run --cpu` drives every part of the check through the same scripts, the training stages under
bf16 autocast as trainer=gpu runs them (which is how Word2Vec's hand-written SGD step, broken
by bf16-mixed on the GPU, is caught here)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OFFLINE_ENV, REPO

pytestmark = pytest.mark.slow


def gpu_check(*args: str, carry: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV, "GPU_CHECK_DIR": str(carry), "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_gpu_check_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    carry, out = tmp_path / "carry", tmp_path / "out"
    missing = gpu_check("run", "--cpu", "--out", str(out), carry=carry)
    assert missing.returncode == 2 and "gpu_check.sh prepare" in missing.stderr

    prepared = gpu_check("prepare", "--no-wheels", carry=carry)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    for path in ("tokens/bpe/train.bin", "tokens/wordpiece/train.bin", "tokenizers/bpe"):
        assert (carry / "data" / path).exists(), path

    ran = gpu_check("run", "--cpu", "--out", str(out), carry=carry)
    assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
    parts = json.loads((out / "gpu_check.json").read_text())["parts"]
    stages = ["stage_word2vec", "stage_bert", "stage_gpt", "fsdp_bert", "fsdp_gpt"]
    assert list(parts) == [*stages, "mfu_b4", "bert"]
    assert all(p["ok"] for p in parts.values())
    for name in stages:
        metrics = parts[name]["metrics"]
        loss = metrics.get("val_loss", metrics.get("val_mlm_loss"))
        assert math.isfinite(loss) and metrics["steps"] > 0 and metrics["tokens_per_s"] > 0, name
    assert parts["mfu_b4"]["figures"]["mfu"]["tokens_per_s"] > 0
    assert parts["bert"]["figures"]["ours_tokens_per_s"] > 0
    assert parts["bert"]["figures"]["hf_tokens_per_s"] > 0
