"""FSDP (FSDP2 under Lightning's ModelParallelStrategy, `trainer=fsdp`) on 2 CPU processes
(gloo): one unit per transformer block, trains what DDP trains, gathers the full weights with
every rank taking part before rank 0 saves and exports, optionally recomputes activations,
and resumes from its checkpoints after a kill."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import FAST, run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow

FSDP_CPU = [
    "trainer=fsdp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "fsdp.param_dtype=float32",
]


@pytest.fixture(scope="module")
def data(prepared_data: Path) -> Path:
    return prepared_data


def args(family: str, data: Path, out: Path, *extra: str) -> list[str]:
    return stage_overrides(family, out, "experiment=smoke", *extra, data=data)


def train(family: str, data: Path, out: Path, *extra: str) -> dict:
    proc = run_stage("train", *args(family, data, out, *extra), env=FAST, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return train_metrics(out, family)


@pytest.mark.parametrize(("family", "monitor"), [("gpt", "val_loss"), ("bert", "val_mlm_loss")])
def test_fsdp_trains_like_ddp_and_saves_the_full_model(family, monitor, data, tmp_path) -> None:
    ddp = train(family, data, tmp_path / "ddp", "trainer=ddp_cpu")
    fsdp = train(family, data, tmp_path / "fsdp", *FSDP_CPU)
    assert fsdp["world_size"] == 2 and fsdp["steps"] == ddp["steps"]
    assert fsdp[monitor] == pytest.approx(ddp[monitor], abs=1e-4)
    assert fsdp["params"] == ddp["params"]  # the gathered model is whole, not a shard
    # the saved weights are the trained ones: evaluating them gives the reported loss
    from llmworks.evaluation.scoring import score_batches

    model_dir = tmp_path / "fsdp" / "models" / family
    assert (model_dir / "hf" / "model.safetensors").is_file()
    if family == "gpt":
        from llmworks.families.gpt.data import WindowDataModule
        from llmworks.families.gpt.model import GPT
        from llmworks.families.gpt.module import NextTokenScores
        from llmworks.families.gpt.settings import WindowDataConfig

        dm = WindowDataModule(
            data / "tokens" / "bpe", None, 32, WindowDataConfig(4, 8, 0, None), 1337
        )
        dm.setup("fit")
        loader = dm.val_dataloader()
        scores = NextTokenScores(None, moe=False)
        got = score_batches(GPT.load(model_dir), scores, loader)["loss"]
        assert got == pytest.approx(fsdp["val_loss"], abs=1e-4)


def test_activation_checkpointing_changes_memory_not_results(data, tmp_path) -> None:
    plain = train("gpt", data, tmp_path / "plain", *FSDP_CPU)
    recomputed = train(
        "gpt", data, tmp_path / "ckpt", *FSDP_CPU, "fsdp.activation_checkpointing=true"
    )
    assert recomputed["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-5)


def test_fsdp_resumes_from_its_checkpoint_after_a_kill(data, tmp_path) -> None:
    import subprocess
    import sys
    import time

    from conftest import OFFLINE_ENV, REPO

    longer = [*FSDP_CPU, "gpt.train.max_steps=40"]
    straight = train("gpt", data, tmp_path / "straight", *longer)
    out = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "pipelines" / "train.py"), *args("gpt", data, out, *longer)]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **OFFLINE_ENV, **FAST},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    last = out / "runs" / "gpt" / "checkpoints" / "last.ckpt"
    while not last.is_file():
        assert proc.poll() is None, "finished before a checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = run_stage("train", *args("gpt", data, out, *longer), env=FAST, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr
    got = train_metrics(out, "gpt")
    assert got["steps"] == straight["steps"]
    assert got["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-5)


def test_fsdp_refuses_word2vec_in_one_line(data, tmp_path) -> None:
    proc = run_stage("train", *args("word2vec", data, tmp_path, *FSDP_CPU), env=FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "use trainer=ddp" in proc.stderr
