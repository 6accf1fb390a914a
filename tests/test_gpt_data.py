"""GPT's datamodule (``families/gpt/data.py``): deterministic windows, disjoint DDP ranks,
fixed validation windows."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from llmworks.errors import LlmworksError
from llmworks.families.gpt.data import WindowDataModule
from llmworks.families.gpt.settings import WindowDataConfig


class FakeTrainer:
    """What the datamodule reads of a trainer: rank, world size, and the loop's progress (a
    fresh run: epoch 0, nothing trained yet)."""

    def __init__(self, rank: int, world: int):
        self.global_rank, self.world_size = rank, world
        self.current_epoch = 0
        progress = SimpleNamespace(is_last_batch=False, current=SimpleNamespace(completed=0))
        self.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))


def datamodule(root, rank=0, world=1, **kw) -> WindowDataModule:
    data = WindowDataConfig(
        batch_size=4, val_windows=kw.pop("val_windows", 10), num_workers=0, seq_len=None
    )
    dm = WindowDataModule(root, None, kw.pop("block_size", 16), data, seed=3)
    dm.trainer = FakeTrainer(rank, world)
    dm.setup("fit")
    return dm


def windows(loader, epoch=0) -> list[tuple[int, ...]]:
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    return [tuple(x.tolist()) for xb, _ in loader for x in xb]


@pytest.fixture(scope="module")
def shards(gpt_data):
    return gpt_data / "tokens" / "bpe"


def test_windows_are_shifted_pairs_from_the_stream(shards):
    dm = datamodule(shards)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_train_order_is_seeded_and_changes_per_epoch(shards):
    a, b = datamodule(shards), datamodule(shards)
    assert windows(a.train_dataloader()) == windows(b.train_dataloader())
    assert windows(a.train_dataloader(), 0) != windows(a.train_dataloader(), 1)


def starts(loader, epoch=0) -> list[int]:
    loader.sampler.set_epoch(epoch)
    return [int(loader.dataset.starts[i]) for i in loader.sampler]


def test_ddp_ranks_get_disjoint_windows_without_repeats(shards):
    single = starts(datamodule(shards).train_dataloader())
    r0 = starts(datamodule(shards, 0, 2).train_dataloader())
    r1 = starts(datamodule(shards, 1, 2).train_dataloader())
    assert len(set(single)) == len(single) == len(datamodule(shards).train)
    assert not set(r0) & set(r1)
    assert len(r0) == len(r1) and len(r0) + len(r1) >= len(single) - 1
    assert len(set(r0)) == len(r0)


def test_validation_windows_are_fixed_and_split_exactly(shards):
    full = [int(s) for s in datamodule(shards).val.starts]
    assert len(full) == len(set(full)) == 10
    assert full == [int(s) for s in datamodule(shards).val.starts]
    parts = []
    for rank in range(3):
        loader = datamodule(shards, rank, 3).val_dataloader()
        parts += [int(loader.dataset.starts[i]) for i in loader.sampler]
    assert sorted(parts) == sorted(full)


def test_too_short_split_is_a_user_error(shards):
    with pytest.raises(LlmworksError, match="block_size"):
        datamodule(shards, block_size=100_000)
