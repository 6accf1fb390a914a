"""SIGKILL through ``dvc repro``, as a crash of the machine would: a killed training stage
resumes from its last checkpoint when the same ``dvc repro`` runs again and ends where an
uninterrupted run ends; a killed data stage leaves nothing half-written that the rerun or DVC
would take as valid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import OFFLINE_ENV, REPO, copy_repo, sh, train_metrics

pytestmark = pytest.mark.slow

# long enough that a kill lands well inside training; checkpoints at every validation
LONGER = [
    "experiment=smoke",
    "logger=none",
    "gpt.train.max_steps=60",
    "bert.train.max_steps=45",
    "word2vec.train.max_epochs=8",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project with the smoke experiment's params (longer training), its data stages run."""
    root = copy_repo(tmp_path_factory.mktemp("crash") / "llmworks")
    sh(sys.executable, "-m", "llmworks.config", *LONGER, "--out", "params.yaml", cwd=root)
    sh("dvc", "repro", "encode@bpe", "encode@wordpiece", cwd=root)
    return root


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    """A command in its own process group, so SIGKILL reaches DVC and the stage it runs."""
    env = {**os.environ, **OFFLINE_ENV}
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """SIGKILL the whole process group as soon as ``ready()`` holds."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, (
            f"finished before the kill:\n{proc.stdout.read().decode()[-3000:]}"
        )
        assert time.monotonic() < end, "never got ready to be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("family", ["word2vec", "bert", "gpt"])
def test_a_killed_training_stage_resumes_under_dvc_repro(repo: Path, family: str, tmp_path) -> None:
    # the uninterrupted run, with the same params, into a side directory
    side = [f"paths.{p}={tmp_path / p}" for p in ("models", "runs", "metrics")]
    straight = sh(
        sys.executable, "pipelines/train.py", "--config-dir", ".", "--config-name",
        "params", "hydra.run.dir=.", "hydra.output_subdir=null", f"family={family}", *side,
        cwd=repo,
    )  # fmt: skip
    assert straight.returncode == 0
    expected = train_metrics(tmp_path, family)

    last = repo / "runs" / family / "checkpoints" / "last.ckpt"
    proc = start(["dvc", "repro", f"train@{family}"], repo)
    kill_when(proc, last.is_file)
    assert not (repo / "metrics" / "train" / f"{family}.json").exists()  # killed mid-training

    rerun = sh("dvc", "repro", f"train@{family}", cwd=repo)
    said = rerun.stdout + rerun.stderr
    assert f"resuming from {Path('runs') / family / 'checkpoints' / 'last.ckpt'}" in said
    got = train_metrics(repo, family)
    assert got["steps"] == expected["steps"]
    # same data order, masks, noise and random state after the resume: float precision
    monitor = {"word2vec": "val_loss", "bert": "val_mlm_loss", "gpt": "val_loss"}[family]
    assert got[monitor] == pytest.approx(expected[monitor], abs=1e-5)
    curve = (repo / "metrics" / "train" / f"{family}_train.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in curve] == list(range(got["steps"]))  # whole history
    assert json.loads(sh("dvc", "status", "--json", f"train@{family}", cwd=repo).stdout) == {}


@pytest.mark.parametrize(
    ("stage", "scratch_parent", "output"),
    [
        ("corpus", "data/corpus", "data/corpus/dataset"),
        ("encode@bpe", "data/tokens", "data/tokens/bpe"),
    ],
)
def test_a_killed_data_stage_leaves_nothing_half_written(
    repo: Path, stage: str, scratch_parent: str, output: str
) -> None:
    """Killed while writing its scratch copy: the rerun finishes with exactly what an
    uninterrupted run wrote (DVC's hash of the output is unchanged). The scratch left by the
    kill is ignored by DVC (.dvcignore), and removed by the stage's next run (DVC may not
    run it: its run cache restores a stage it has seen with the same inputs)."""

    def lock() -> str:
        return yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]["outs"][0]["md5"]

    before = lock()
    parent = repo / scratch_parent
    proc = start(["dvc", "repro", "-f", "-s", stage], repo)
    kill_when(proc, lambda: any(parent.glob(".llmworks-scratch-*")))
    sh("dvc", "repro", "-s", stage, cwd=repo)
    for left in parent.glob(".llmworks-scratch-*"):
        assert sh("dvc", "check-ignore", str(left.relative_to(repo)), cwd=repo).returncode == 0
    assert lock() == before
    assert json.loads(sh("dvc", "status", "--json", stage, cwd=repo).stdout) == {}
    assert (repo / output).is_dir()


def test_a_damaged_checkpoint_stops_with_the_file_and_the_choice(repo: Path) -> None:
    ckpt = repo / "runs" / "gpt" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_bytes(b"PK\x03\x04" + b"\x00" * 100)  # a truncated zip
    proc = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py"), "--config-dir", ".",
         "--config-name", "params", "hydra.run.dir=.", "hydra.output_subdir=null",
         "hydra/job_logging=none", "hydra/hydra_logging=none", "family=gpt"],
        cwd=repo, env={**os.environ, **OFFLINE_ENV}, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{ckpt.relative_to(repo)} cannot be read" in proc.stderr
    assert "train afresh" in proc.stderr and ckpt.is_file()  # nothing deleted for the user
