"""SIGKILL through ``dvc repro``, as a crash of the machine would: a killed training stage
resumes from its last checkpoint when the same ``dvc repro`` runs again and ends where an
uninterrupted run ends; a killed data stage leaves nothing half-written that the rerun or DVC
would take as valid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from llmworks.tracking.sync import offline_runs, read_offline_run, records

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


def start(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A command in its own process group, so a signal reaches DVC and the stage it runs."""
    env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_when(
    proc: subprocess.Popen, ready, sig: int = signal.SIGKILL, timeout: float = 300
) -> None:
    """Send ``sig`` to the whole process group as soon as ``ready()`` holds."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, (
            f"finished before the kill:\n{proc.stdout.read().decode()[-3000:]}"
        )
        assert time.monotonic() < end, "never got ready to be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)


@pytest.fixture(scope="module")
def uninterrupted(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    """``train_metrics`` of an uninterrupted run of a family with the repo's params, trained
    once per module into a side directory: what every interrupted run must end at."""
    done: dict[str, dict] = {}

    def metrics(family: str) -> dict:
        if family not in done:
            out = tmp_path_factory.mktemp(f"straight-{family}")
            proc = train_direct(repo, family, out)
            assert proc.returncode == 0, proc.stderr[-3000:]
            done[family] = train_metrics(out, family)
        return done[family]

    return metrics


@pytest.mark.parametrize("family", ["word2vec", "bert", "gpt"])
def test_a_killed_training_stage_resumes_under_dvc_repro(
    repo: Path, family: str, uninterrupted
) -> None:
    expected = uninterrupted(family)

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


def train_direct(repo: Path, family: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``pipelines/train.py`` on the repo's params, writing under ``out``, with the test
    callbacks of ``tests/`` importable."""
    side = [f"paths.{p}={out / p}" for p in ("models", "runs", "metrics")]
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO / "tests")}
    return subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "train.py"), "--config-dir", ".",
         "--config-name", "params", "hydra.run.dir=.", "hydra.output_subdir=null",
         f"family={family}", *side, *extra],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("family", "name", "phase", "step", "stops_at"),
    [
        ("gpt", "SIGTERM", "train", 23, 23),  # regular checkpoints every 5 steps
        ("bert", "SIGUSR1", "validation", 20, 21),  # validates every 3 steps
    ],
)
def test_a_preempted_stage_saves_where_it_stopped_and_resumes_exactly(
    repo: Path,
    family: str,
    name: str,
    phase: str,
    step: int,
    stops_at: int,
    tmp_path: Path,
    uninterrupted,
) -> None:
    """SIGTERM (a scheduler's preemption) or SLURM's SIGUSR1, in training or in the middle
    of a validation: the stage saves last.ckpt at the step it stopped, says so in one line,
    exits 128 + the signal's number, and the rerun ends where an uninterrupted run ends."""
    once = tmp_path / "fired"
    signal_at = (
        f"+callbacks.signal_at={{_target_:signal_at.SignalAt,step:{step},"
        f"once:'{once}',name:{name},phase:{phase}}}"
    )
    expected = uninterrupted(family)  # a callback that sends nothing changes nothing
    out = tmp_path / "stopped"
    wandb = ["logger.mode=offline", f"logger.dir={out}"]
    stopped = train_direct(repo, family, out, signal_at, *wandb)
    signum = getattr(signal, name)
    assert stopped.returncode == 128 + signum, stopped.stderr[-3000:]
    last = out / "runs" / family / "checkpoints" / "last.ckpt"
    saved_at = torch_load(last)["global_step"]
    assert saved_at == stops_at
    line = [ln for ln in stopped.stderr.splitlines() if ln.startswith("llmworks:")]
    assert line == [
        f"llmworks: stopped by {name} at step {saved_at} (saved {last}); rerun the same "
        "command to resume"
    ]
    assert "Traceback" not in stopped.stderr
    assert not (out / "metrics" / "train" / f"{family}.json").exists()
    # the W&B run is marked preempting and ends with the stage's status
    (run_dir,) = offline_runs(out)
    kinds = {r.WhichOneof("record_type"): r for r in records(run_dir)}
    assert "preempting" in kinds and kinds["exit"].exit.exit_code == 128 + signum

    rerun = train_direct(repo, family, out, signal_at, *wandb)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {last}" in rerun.stdout + rerun.stderr
    got = train_metrics(out, family)
    monitor = {"bert": "val_mlm_loss", "gpt": "val_loss"}[family]
    assert got["steps"] == expected["steps"]
    assert got[monitor] == pytest.approx(expected[monitor], abs=1e-5)
    first, second = offline_runs(out)  # the rerun continues the same W&B run
    assert read_offline_run(second)["state"] == "finished"
    assert run_id(first) == run_id(second) == run_id(run_dir)


def run_id(run_dir: Path) -> str:
    return next(r.run.run_id for r in records(run_dir) if r.WhichOneof("record_type") == "run")


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_sigterm_under_dvc_exp_run_stops_the_stage_and_the_rerun_resumes(
    repo: Path, uninterrupted, tmp_path: Path
) -> None:
    """SIGTERM to the whole job, as SLURM sends it to every process of a step, while
    ``dvc exp run`` trains: DVC reports an unfinished stage (not a missing output), the
    stage's last.ckpt holds the step it stopped at, and the next ``dvc exp run`` resumes
    from it and ends where an uninterrupted run ends."""
    expected = uninterrupted("gpt")  # a callback that only waits changes nothing

    runs = repo / "runs" / "gpt"
    shutil.rmtree(runs, ignore_errors=True)
    last = runs / "checkpoints" / "last.ckpt"
    ready = tmp_path / "paused"  # training holds at step 12 (checkpoints every 5) for the signal
    pause = f"+callbacks.pause={{_target_:signal_at.PauseAt,step:12,ready:'{ready}'}}"
    # forced, this stage only: an earlier test may have trained it with these params already
    settings = [x for a in [*LONGER, pause] for x in ("-S", a)]
    exp_run = ["dvc", "exp", "run", "--force", "--single-item", *settings, "train@gpt"]
    tests_on_path = {"PYTHONPATH": str(REPO / "tests")}
    proc = start(exp_run, repo, tests_on_path)
    try:
        kill_when(proc, ready.is_file, signal.SIGTERM)
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    said = proc.stdout.read().decode()
    assert proc.returncode != 0, said[-3000:]
    assert torch_load(last)["global_step"] == 12
    assert "llmworks: stopped by SIGTERM at step 12" in said, said[-3000:]
    assert "does not exist" not in said

    rerun = sh(*exp_run, cwd=repo, env=tests_on_path)
    assert f"resuming from {Path('runs') / 'gpt' / 'checkpoints' / 'last.ckpt'}" in (
        rerun.stdout + rerun.stderr
    )
    got = train_metrics(repo, "gpt")
    assert got["steps"] == expected["steps"]
    assert got["val_loss"] == pytest.approx(expected["val_loss"], abs=1e-5)


def experiments(repo: Path) -> dict[str, dict]:
    """``dvc exp show``'s experiments by name: their params and metrics."""
    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)
    return {
        e["name"]: e["data"]
        for row in shown
        for e in row.get("experiments") or []
        for e in ([e] if "data" in e else e.get("revs", []))
    }


def queue_done(repo: Path, timeout: float = 900) -> str:
    """``dvc queue status`` once nothing is queued or running."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = sh("dvc", "queue", "status", cwd=repo).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(3)
    raise AssertionError("the queue did not finish")


@pytest.mark.parametrize("mode", ["queue", "temp"])
def test_a_killed_experiment_in_a_temporary_workspace_resumes_when_run_again(
    repo: Path, uninterrupted, tmp_path: Path, mode: str
) -> None:
    """``dvc exp run --queue`` and ``--temp`` train in a copy of the workspace that DVC
    deletes when the experiment ends, failed or not. The run state lives in the main
    workspace instead (``runs/exps/<key>/``): SIGKILL at step 23, the same experiment run
    again resumes from its step-20 checkpoint and ends where an uninterrupted run ends."""
    expected = uninterrupted("gpt")
    once = tmp_path / "killed"
    step = {"queue": 23, "temp": 24}[mode]  # two experiments: two run-state keys
    kill = (
        f"+callbacks.signal_at={{_target_:signal_at.SignalAt,step:{step},"
        f"once:'{once}',name:SIGKILL}}"
    )
    settings = [x for a in [*LONGER, kill] for x in ("-S", a)]
    env = {"PYTHONPATH": str(REPO / "tests")}
    # a temporary workspace starts from the last commit: it needs the data stages' lock
    sh("git", "add", "dvc.lock", cwd=repo)
    sh("git", "commit", "-q", "--allow-empty", "-m", "data stages", cwd=repo)
    before = set((repo / "runs" / "exps").glob("*"))

    def run_once() -> None:
        if mode == "queue":
            sh("dvc", "exp", "run", "--queue", "--single-item", *settings, "train@gpt", cwd=repo)
            sh("dvc", "queue", "start", cwd=repo, env=env)
            queue_done(repo)
        else:
            sh("dvc", "exp", "run", "--temp", "--single-item", *settings, "train@gpt",
               cwd=repo, env=env, check=False)  # fmt: skip

    run_once()
    assert once.is_file()  # killed at step 23
    state = set((repo / "runs" / "exps").glob("*")) - before
    assert len(state) == 1, state
    run_dir = state.pop() / "gpt"
    assert torch_load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 20
    assert not (run_dir / "finished").exists()

    run_once()
    assert (run_dir / "finished").is_file()
    sessions = sorted(p.name.rsplit("-", 1)[1] for p in (run_dir / "csv").iterdir())
    assert sessions == ["0", "1"]  # the second run resumed the first one's run
    finished = [
        gpt["data"]
        for data in experiments(repo).values()
        if "data" in (gpt := (data.get("metrics") or {}).get("metrics/train/gpt.json") or {})
        and data["params"]["params.yaml"]["data"]["callbacks"].get("signal_at", {}).get("step")
        == step
    ]
    assert len(finished) == 1, finished
    assert finished[0]["steps"] == expected["steps"]
    assert finished[0]["val_loss"] == pytest.approx(expected["val_loss"], abs=1e-5)
