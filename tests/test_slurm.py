"""The SLURM paths, as far as a machine without SLURM can run them: the Hydra app through
submitit's local launcher (the same launcher plugin the `slurm` preset uses), the preset's
geometry taken from the trainer settings, and the sbatch template's srun line checked by a
dry run (Hydra composes the config it would run, with SLURM's variables)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import OFFLINE_ENV, REPO, run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow


def test_the_training_app_runs_through_submitit(prepared_data: Path, tmp_path: Path) -> None:
    data = prepared_data
    proc = run_stage(
        "train", "-m", "hydra/launcher=submitit_local",
        # the geometry as the slurm preset derives it from the trainer settings
        "hydra.launcher.nodes=${trainer.num_nodes}", "hydra.launcher.tasks_per_node=${trainer.devices}",
        *stage_overrides("gpt", tmp_path, "experiment=smoke", "logger=none", data=data),
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert train_metrics(tmp_path, "gpt")["steps"] == 10
    logs = list((tmp_path / "sweep" / ".submitit").glob("*/*_0_log.out"))
    assert logs and "train@gpt:" in logs[0].read_text()  # the job ran as a submitit task


def test_the_slurm_preset_takes_its_geometry_from_the_trainer() -> None:
    proc = run_stage("train", "family=gpt", "hydra/launcher=slurm", "--cfg", "hydra")
    assert proc.returncode == 0, proc.stderr[-2000:]
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["nodes"] == "${trainer.num_nodes}"
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == "${trainer.devices}"


def srun_command(template: Path, env: dict[str, str]) -> list[str]:
    """The srun line of the sbatch template as bash would run it (continuations joined,
    variables expanded, quotes removed), without ``srun``."""
    text = template.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("srun "))
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], line.split("||")[0])
    return shlex.split(line)[1:]


def test_the_sbatch_template_runs_the_stage_with_slurms_geometry() -> None:
    template = REPO / "slurm" / "train.sbatch"
    assert subprocess.run(["bash", "-n", str(template)]).returncode == 0
    env = {**os.environ, **OFFLINE_ENV, "FAMILY": "gpt", "SLURM_NNODES": "3",
           "SLURM_NTASKS_PER_NODE": "4"}  # fmt: skip
    args = srun_command(template, env)
    assert args[:2] == ["python", "pipelines/train.py"] and "family=gpt" in args
    proc = subprocess.run([sys.executable, *args[1:], "--cfg", "job"], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    trainer = yaml.safe_load(proc.stdout)["trainer"]
    assert (trainer["num_nodes"], trainer["devices"]) == (3, 4)
    assert (trainer["accelerator"], trainer["strategy"]) == ("gpu", "ddp")
    # after the tasks, one dvc commit records the stage
    assert re.search(r"^dvc commit .*train@\$\{FAMILY\}", template.read_text(), re.M)


@pytest.mark.parametrize(
    ("srun_status", "calls", "status"),
    [
        (0, ["dvc commit --force train@gpt"], 0),
        (138, ["scontrol requeue 4242"], 0),  # SIGUSR1 before the time limit: saved, go again
        (143, ["scontrol requeue 4242"], 0),  # SIGTERM: preempted
        (2, [], 2),  # a real failure: no requeue, no commit
    ],
)
def test_the_sbatch_template_requeues_a_stopped_stage_and_commits_a_finished_one(
    tmp_path: Path, srun_status: int, calls: list[str], status: int
) -> None:
    """The template under bash with stand-ins for srun, scontrol and dvc on PATH."""
    log = tmp_path / "calls"
    for tool, body in [("srun", f"exit {srun_status}"), ("scontrol", ""), ("dvc", "")]:
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/bash\n[ {tool} = srun ] || echo "{tool} $*" >> {log}\n{body}\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_NNODES": "1", "SLURM_NTASKS_PER_NODE": "1"}  # fmt: skip
    proc = subprocess.run(["bash", str(REPO / "slurm" / "train.sbatch"), "gpt"], cwd=tmp_path,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == status, proc.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == calls
