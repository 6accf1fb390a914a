"""A sweep the DVC way, as the README shows it: `dvc exp run --queue` with a `choice()`
override, run by `dvc queue start -j 2` in temporary workspaces that DVC deletes afterwards.
Every stage's W&B run of both experiments must survive (written under DVC_ROOT), carry its
experiment's overridden value in its config and its metrics, and the experiments compare in
`dvc exp show`; each keeps its own training state under the main workspace's runs/exps/.
The sweep runs GPT's part of the pipeline (the target train@gpt and the stages it reads):
what the queue does to the stages after it is the same (the whole smoke pipeline, with its
evaluate and finetune runs, is tests/test_dvc_pipeline.py's)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmworks.tracking.sync import offline_runs, read_offline_run

from conftest import copy_repo, sh

pytestmark = pytest.mark.slow

STAGES = {"corpus", "train_tokenizer@bpe", "encode@bpe", "train@gpt"}
GPT_DEPENDENT = {"train@gpt"}


def wait_for_queue(repo: Path, timeout: float = 1500) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = sh("dvc", "queue", "status", cwd=repo).stdout
        if "Queued" not in status and "Running" not in status:
            assert "Failed" not in status, (
                status + sh("dvc", "queue", "logs", cwd=repo, check=False).stdout
            )
            return
        time.sleep(5)
    raise AssertionError("the queue did not finish")


def test_a_queued_sweep_keeps_every_wandb_run_and_compares(tmp_path_factory) -> None:
    repo = copy_repo(tmp_path_factory.mktemp("sweep") / "llmworks")
    # threads=1: two workers on this 2-core machine, one core each
    sh("dvc", "exp", "run", "--queue", "-S", "experiment=smoke", "-S", "threads=1",
       "-S", "gpt.optim.lr=choice(0.001,0.003)", "train@gpt", cwd=repo)  # fmt: skip
    sh("dvc", "queue", "start", "-j", "2", cwd=repo)
    wait_for_queue(repo)

    shown = json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)
    exps = {
        e["name"]: e["data"]
        for row in shown
        for e in row.get("experiments") or []
        for e in ([e] if "data" in e else e.get("revs", []))
    }
    assert len(exps) == 2, list(exps)
    lr = {
        name: data["params"]["params.yaml"]["data"]["gpt"]["optim"]["lr"]
        for name, data in exps.items()
    }
    assert sorted(lr.values()) == [0.001, 0.003]

    runs = [read_offline_run(p) for p in offline_runs(repo / "wandb")]
    ran: set[str] = set()
    for name in exps:  # DVC deleted the workspaces; their W&B runs are in the main one
        mine = {r["job_type"] for r in runs if r["group"] == name}
        # what the learning rate changes runs in each experiment; a stage both share may
        # run in only one of them, the other restoring its outputs from DVC's run cache
        assert GPT_DEPENDENT <= mine <= STAGES, (name, mine)
        ran |= mine
    assert ran == STAGES
    for name in exps:
        mine = [r for r in runs if r["group"] == name]
        gpt = next(r for r in mine if r["job_type"] == "train@gpt")
        assert gpt["config"]["gpt"]["optim"]["lr"] == lr[name]
        assert gpt["summary"]["final/val_loss"] > 0
    losses = {
        name: data["metrics"]["metrics/train/gpt.json"]["data"]["val_loss"]
        for name, data in exps.items()
    }
    assert len(set(losses.values())) == 2  # the learning rate made a difference
    # each experiment kept its own training state in the main workspace, not in the
    # temporary one DVC deleted, and never shared it with the other
    finished = sorted((repo / "runs" / "exps").glob("*/gpt/finished"))
    assert len(finished) == 2 and len({p.read_text() for p in finished}) == 2
    assert not (repo / "runs" / "gpt").exists()
