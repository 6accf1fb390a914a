"""FSDP (FSDP2 under Lightning's ModelParallelStrategy, `trainer=fsdp`) on 2 CPU processes
(gloo): one unit per transformer block, trains what DDP trains, gathers the full weights with
every rank taking part before rank 0 saves and exports, optionally recomputes activations,
and resumes from its checkpoints after a kill."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, REPO, run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow

FSDP_CPU = [
    "trainer=fsdp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "fsdp.param_dtype=float32",
]


# GPT long enough that a kill lands between checkpoints (one at every 5-step validation)
GPT_STEPS = "gpt.train.max_steps=40"


@pytest.fixture(scope="module")
def data(prepared_data: Path) -> Path:
    return prepared_data


@pytest.fixture(scope="module")
def fsdp_gpt(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One FSDP run of GPT (its output folder and metrics): what DDP, activation
    checkpointing and a killed-and-resumed run are each compared with."""
    out = tmp_path_factory.mktemp("fsdp_gpt")
    return out, train("gpt", data, out, *FSDP_CPU, GPT_STEPS)


def args(family: str, data: Path, out: Path, *extra: str) -> list[str]:
    return stage_overrides(family, out, "experiment=smoke", *extra, data=data)


def train(family: str, data: Path, out: Path, *extra: str) -> dict:
    proc = run_stage("train", *args(family, data, out, *extra), env=FAST, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return train_metrics(out, family)


@pytest.mark.parametrize(("family", "monitor"), [("gpt", "val_loss"), ("bert", "val_mlm_loss")])
def test_fsdp_trains_like_ddp_and_saves_the_full_model(
    family, monitor, data, fsdp_gpt, tmp_path
) -> None:
    if family == "gpt":
        ddp = train(family, data, tmp_path / "ddp", "trainer=ddp_cpu", GPT_STEPS)
        fsdp_dir, fsdp = fsdp_gpt
    else:
        ddp = train(family, data, tmp_path / "ddp", "trainer=ddp_cpu")
        fsdp_dir, fsdp = tmp_path / "fsdp", train(family, data, tmp_path / "fsdp", *FSDP_CPU)
    assert fsdp["world_size"] == 2 and fsdp["steps"] == ddp["steps"]
    assert fsdp[monitor] == pytest.approx(ddp[monitor], abs=1e-4)
    assert fsdp["params"] == ddp["params"]  # the gathered model is whole, not a shard
    # the saved weights are the trained ones: evaluating them gives the reported loss
    from llmworks.evaluation.scoring import score_batches

    model_dir = fsdp_dir / "models" / family
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


def test_activation_checkpointing_changes_memory_not_results(data, fsdp_gpt, tmp_path) -> None:
    _, plain = fsdp_gpt
    recomputed = train(
        "gpt", data, tmp_path / "ckpt", *FSDP_CPU, GPT_STEPS, "fsdp.activation_checkpointing=true"
    )
    assert recomputed["val_loss"] == pytest.approx(plain["val_loss"], abs=1e-5)


def test_fsdp_resumes_from_its_checkpoint_after_a_kill(data, fsdp_gpt, tmp_path) -> None:
    import subprocess
    import sys
    import time

    from conftest import OFFLINE_ENV, REPO

    _, straight = fsdp_gpt
    longer = [*FSDP_CPU, GPT_STEPS]
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


def test_fsdp_refuses_word2vec_in_one_line_before_lightning_loads(data, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "pipelines" / "train.py"),
         *args("word2vec", data, tmp_path, *FSDP_CPU)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, **FAST},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the word2vec family has none (its tables update in place): use trainer=ddp" in (
        proc.stderr
    )
    imported = re.findall(r"\|\s+([\w.]+)$", proc.stderr, re.M)  # -X importtime's lines
    assert "lightning" not in imported


def test_shard_refuses_a_model_without_blocks_in_the_preflights_words() -> None:
    """``shard`` is the fallback for a model the preflight did not know about (a family
    without ``SHARDABLE``): the same one line, naming the model's class."""
    from torch import nn

    from llmworks.errors import LlmworksError
    from llmworks.training.sharding import FSDPConfig, shard

    with pytest.raises(LlmworksError) as refused:
        shard(nn.Embedding(4, 2), mesh=None, cfg=FSDPConfig("float32", "float32", False))
    assert str(refused.value) == (
        "trainer=fsdp shards transformer blocks; Embedding has none "
        "(its tables update in place): use trainer=ddp"
    )
