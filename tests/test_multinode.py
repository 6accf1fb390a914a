"""Two nodes simulated on this machine: two `torchrun --nnodes=2 --nproc-per-node=1` launchers
on 127.0.0.1 (gloo) run the real training entry points with `trainer.num_nodes=2`. One
process writes the checkpoints, the W&B run and the final artifacts; each trains on its own
share of the data (disjoint: the samplers' rank split, tests/test_gpt_data.py), and
together they train what one process trains on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OFFLINE_ENV, REPO, run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(overrides: list[str], out: Path) -> list[subprocess.CompletedProcess]:
    """The training stage on two simulated nodes, one process each; both launchers waited
    for."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                torchrun,
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                str(REPO / "pipelines" / "train.py"),
                *overrides,
                "trainer=ddp_cpu",
                "trainer.devices=1",
                "trainer.num_nodes=2",
                f"hydra.run.dir={out / f'h{rank}'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    results = []
    for p in procs:
        stdout, _ = p.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, ""))
    return results


@pytest.fixture(scope="module")
def data(prepared_data: Path) -> Path:
    return prepared_data


# (family, per-process batch override, single-process batch override, tolerance)
FAMILIES = [
    ("gpt", "gpt.data.batch_size=4", "gpt.data.batch_size=8", 1e-4),
    # DDP averages the two processes' mean losses; one process averages over all masked
    # tokens of the batch: the two weigh tokens slightly differently
    ("bert", "bert.data.batch_size=4", "bert.data.batch_size=8", 2e-2),
    # each process runs its own SGD on half of the batches; the tables are averaged after
    # every epoch: another optimiser than one process's, close but not equal
    ("word2vec", "word2vec.data.batch_words=256", "word2vec.data.batch_words=512", 5e-2),
]


@pytest.mark.parametrize(
    ("family", "per_rank", "single", "tolerance"), FAMILIES, ids=[f[0] for f in FAMILIES]
)
def test_two_nodes_train_like_one_process_with_one_writer(
    family: str, per_rank: str, single: str, tolerance: float, data: Path, tmp_path: Path
) -> None:
    smoke = ["experiment=smoke", "word2vec.min_count=1", "word2vec.train.max_epochs=3",
             "word2vec.data.step_words=128"]  # fmt: skip
    one = tmp_path / "one"
    proc = run_stage("train", *stage_overrides(family, one, *smoke, single, data=data))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two"
    ranks = two_nodes(stage_overrides(family, two, *smoke, per_rank, data=data), two)
    for rank, result in enumerate(ranks):
        assert result.returncode == 0, f"rank {rank}:\n{result.stdout[-3000:]}"
    expected = train_metrics(one, family)
    got = train_metrics(two, family)
    assert got["world_size"] == 2 and got["steps"] == expected["steps"]
    monitor = {"gpt": "val_loss", "bert": "val_mlm_loss", "word2vec": "val_loss"}[family]
    assert got[monitor] == pytest.approx(expected[monitor], rel=tolerance)
    # one writer: one checkpoint set, one W&B run, the final artifacts once (rank 0 alone)
    ckpts = two / "runs" / family / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((two / "wandb").glob("offline-run-*"))) == 1
    assert f"train@{family}: {{" in ranks[0].stdout and f"train@{family}: {{" not in ranks[1].stdout
    assert (two / "models" / family / "model.safetensors").is_file()
    assert not list((two / "models").glob(".llmworks-scratch-*"))
