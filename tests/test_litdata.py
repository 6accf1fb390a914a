"""``data.backend=litdata``: the encode stage writes the training split as litdata chunks of
the very tokens of the memory-mapped shard; GPT and BERT train from them through litdata's
StreamingDataset (from a local folder, or a "remote" that litdata caches), resume exactly
from the loader state in the checkpoint, and give each DDP rank its own blocks."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, local_corpus_overrides, run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow

CHUNK = 512  # small chunks: the test corpus (~2,700 training tokens) spans several
LITDATA = ("data.backend=litdata", f"data.chunk_tokens={CHUNK}")
LONGER = ("experiment=smoke", "gpt.train.max_steps=30")  # smoke's validation every 5 steps


@pytest.fixture(scope="module")
def streamed(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with ``prepared_data``'s corpus and tokenizers, encoded again by the
    encode stage with ``data.backend=litdata``."""
    root = tmp_path_factory.mktemp("litdata")
    for part in ("corpus", "tokenizers"):
        shutil.copytree(prepared_data / part, root / "data" / part)
    args = stage_overrides(None, root, *local_corpus_overrides(root / "unused"), *LITDATA)
    proc = run_stage("encode", *args, env={"WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def train(root: Path, family: str, *extra: str, out: Path | None = None):
    out = out or root
    args = stage_overrides(family, out, *LITDATA, "logger=none", *extra, data=root / "data")
    return run_stage("train", *args)


def test_the_chunks_hold_the_shard_tokens_and_the_shards_are_unchanged(
    streamed: Path, prepared_data: Path
) -> None:
    from llmworks.data.streaming import TokenBlocks

    for name in ("bpe", "wordpiece", "unigram"):
        tokens, memmapped = streamed / "data" / "tokens" / name, prepared_data / "tokens" / name
        # the memory-mapped shards are the default run's, byte for byte
        for f in sorted(p.name for p in memmapped.iterdir() if p.is_file()):
            if f != "meta.json":
                assert (tokens / f).read_bytes() == (memmapped / f).read_bytes(), (name, f)
        meta = json.loads((tokens / "meta.json").read_text())
        index = json.loads((tokens / "litdata" / "train" / "index.json").read_text())
        dims = [c["dim"] for c in index["chunks"]]
        assert meta["litdata"]["train"] == {"chunks": len(dims), "chunk_tokens": CHUNK}
        shard = np.memmap(tokens / "train.bin", dtype=meta["dtype"], mode="r")
        assert len(dims) > 2 and sum(dims) == len(shard) and set(dims[:-1]) == {CHUNK}
        # read back through litdata: every block is the shard's tokens at its place
        block = 64  # divides CHUNK: only the last chunk's tail is left out
        source = str(tokens / "litdata" / "train")
        blocks = TokenBlocks(source, block, seed=0, transform=lambda i, b: b, shuffle=False)
        read = np.concatenate([blocks[i].numpy() for i in range(len(blocks))])
        assert len(shard) - len(read) < block
        assert np.array_equal(read, shard[: len(read)]), name


@pytest.fixture(scope="module")
def uninterrupted(streamed: Path, tmp_path_factory: pytest.TempPathFactory):
    """``train_metrics`` of an uninterrupted GPT run on each backend, trained once."""
    done: dict[str, dict] = {}

    def metrics(backend: str) -> dict:
        if backend not in done:
            out = tmp_path_factory.mktemp(f"straight-{backend}")
            proc = train(streamed, "gpt", *LONGER, f"data.backend={backend}", out=out)
            assert proc.returncode == 0, proc.stderr[-3000:]
            done[backend] = train_metrics(out, "gpt")
        return done[backend]

    return metrics


@pytest.mark.parametrize(
    ("backend", "step", "epoch_end"),
    [
        ("litdata", 13, False),  # mid-epoch: litdata skips the blocks already trained
        ("litdata", 19, True),  # the epoch's last batch (19 batches of 4 blocks)
        ("memmap", 21, True),  # the same on the memory-mapped path (21 batches of 4 windows)
    ],
)
def test_gpt_resumes_exactly_after_a_preemption(
    streamed: Path, tmp_path: Path, uninterrupted, backend: str, step: int, epoch_end: bool
) -> None:
    """SIGTERM at ``step``: the checkpoint holds litdata's loader state, and the rerun ends
    where an uninterrupted run ends. At an epoch's last batch Lightning 2.6 alone would train
    one batch of the next epoch and end it (``SaveOnPreemption`` resets its counts)."""
    expected = uninterrupted(backend)
    out = tmp_path / "stopped"
    once = tmp_path / "fired"
    signal_at = (
        f"+callbacks.signal_at={{_target_:signal_at.SignalAt,step:{step},once:'{once}',"
        "name:SIGTERM,phase:train}"
    )
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    args = stage_overrides("gpt", out, *LITDATA, "logger=none", *LONGER, signal_at,
                           f"data.backend={backend}", data=streamed / "data")  # fmt: skip
    stopped = run_stage("train", *args, env=env)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    last = out / "runs" / "gpt" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    loops = ckpt["loops"]["fit_loop"]
    assert ckpt["global_step"] == step
    assert loops["epoch_loop.batch_progress"]["is_last_batch"] == epoch_end
    if backend == "litdata":
        (loader,) = loops["state_dict"]["combined_loader"]  # litdata's own state
        assert loader["dataset"]["item_loader"] == {"block_size": 33}  # smoke's block + 1

    rerun = run_stage("train", *args, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from {last}" in rerun.stdout + rerun.stderr
    got = train_metrics(out, "gpt")
    assert got["steps"] == expected["steps"] == 30
    assert got["val_loss"] == pytest.approx(expected["val_loss"], abs=1e-5)


def test_bert_streams_from_a_remote_it_caches_as_from_the_local_folder(
    streamed: Path, tmp_path: Path
) -> None:
    """``local:`` makes litdata treat a folder as an object store: chunks are copied into
    ``data.cache_dir`` as read. Same chunks, same seed: the same model as the local run."""
    remote = tmp_path / "bucket"
    shutil.copytree(streamed / "data" / "tokens" / "wordpiece" / "litdata", remote / "wordpiece")
    local = train(streamed, "bert", "experiment=smoke", out=tmp_path / "local")
    assert local.returncode == 0, local.stderr[-3000:]
    cache = tmp_path / "cache"
    far = train(streamed, "bert", "experiment=smoke", f"data.litdata_dir=local:{remote}",
                f"data.cache_dir={cache}", out=tmp_path / "far")  # fmt: skip
    assert far.returncode == 0, far.stderr[-3000:]
    assert list(cache.rglob("chunk-*.bin"))  # read through litdata's cache
    a, b = train_metrics(tmp_path / "local", "bert"), train_metrics(tmp_path / "far", "bert")
    assert a["steps"] == b["steps"] == 6
    assert a["val_mlm_loss"] == b["val_mlm_loss"] and a["train_loss"] == b["train_loss"]


def _rank_blocks(rank: int, world: int, source: str, port: int, out: str) -> None:
    """One DDP rank (gloo): the block indices and tokens it draws in one epoch."""
    import os

    import torch.distributed as dist

    from llmworks.data.streaming import Stream

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        stream = Stream(source, None)
        blocks = stream.blocks(63, seed=7, transform=lambda i, b: (i, b))
        loader = stream.loader(blocks, 4, 0, None, collate_fn=list)
        drawn = [(i, b.tolist()) for batch in loader for i, b in batch]
        Path(out).write_text(json.dumps(drawn))
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_draw_disjoint_blocks_of_the_shard(streamed: Path, tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    source = str(streamed / "data" / "tokens" / "bpe" / "litdata" / "train")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs = [str(tmp_path / f"rank{r}.json") for r in range(2)]
    mp.start_processes(
        _run_rank, args=(2, source, port, outs), nprocs=2, join=True, start_method="spawn"
    )
    drawn = [json.loads(Path(o).read_text()) for o in outs]
    ids = [{i for i, _ in d} for d in drawn]
    assert len(drawn[0]) == len(drawn[1]) > 0 and not ids[0] & ids[1]
    shard = np.memmap(streamed / "data" / "tokens" / "bpe" / "train.bin", dtype=np.uint16, mode="r")
    per_chunk = CHUNK // 63  # blocks never span two chunks
    for i, tokens in drawn[0] + drawn[1]:
        start = (i // per_chunk) * CHUNK + (i % per_chunk) * 63
        assert tokens == shard[start : start + 63].tolist()


def _run_rank(rank: int, world: int, source: str, port: int, outs: list[str]) -> None:
    _rank_blocks(rank, world, source, port, outs[rank])


@pytest.mark.parametrize("damage", ["never written", "a chunk cut short", "index unreadable"])
def test_chunks_that_are_not_whole_are_refused_before_lightning_loads(
    damage: str, streamed: Path, prepared_data: Path, tmp_path: Path
) -> None:
    """The preflight reads the index and sizes the chunks (``check_chunks``): a user learns
    of missing or damaged chunks in the seconds before Lightning's import, not after it."""
    data = prepared_data  # encoded without litdata: no chunks
    if damage != "never written":
        data = tmp_path / "data"
        shutil.copytree(streamed / "data", data)
        train_dir = data / "tokens" / "bpe" / "litdata" / "train"
        if damage == "a chunk cut short":
            chunk = sorted(train_dir.glob("chunk-*.bin"))[0]
            chunk.write_bytes(chunk.read_bytes()[:-3])
        else:
            (train_dir / "index.json").write_text('{"chunks": [')
    args = stage_overrides("gpt", tmp_path, *LITDATA, "logger=none", data=data)
    bad = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "pipelines" / "train.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    expected = {
        "never written": "holds no litdata chunks (index.json)",
        "a chunk cut short": ": the index says",
        "index unreadable": "index.json is damaged",
    }[damage]
    assert bad.returncode == 2 and expected in bad.stderr, bad.stderr[-2000:]
    imported = re.findall(r"\|\s+([\w.]+)$", bad.stderr, re.M)  # -X importtime's lines
    assert "lightning" not in imported and "litdata" not in imported
