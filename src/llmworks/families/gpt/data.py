"""GPT's batches: contiguous windows read from the memory-mapped token shards.

Training splits the train stream into non-overlapping windows of ``block_size + 1`` tokens
(input and its one-token shift) and visits them in a seeded random order, a new permutation
each epoch; under DDP each rank takes every ``world_size``-th window of that permutation, so
ranks see different data and no window repeats within an epoch (the few windows that do not
divide evenly are dropped). A run resumed from a mid-epoch checkpoint continues the epoch's
order where it stopped, so it sees the same batches as an uninterrupted run. Validation uses
a fixed, evenly spread set of windows, split between ranks without padding so the reduced
loss counts every window exactly once.

With ``data.backend=litdata`` the training windows stream from litdata chunks instead
(``llmworks.data.streaming``): blocks of ``block_size + 1`` tokens cut end to end (litgpt's
layout; the memory-mapped windows overlap by the one token of the shift), shuffled per epoch
by litdata, a disjoint share per rank, resumed mid-epoch from the loader's state in the
checkpoint. Validation and test read the memory-mapped shards either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llmworks.data.samplers import (
    EvalSampler,
    TrainSampler,
    loader_generator,
    rank_and_world,
    resume_point,
)
from llmworks.data.shards import TextPerToken, TokenShards, open_shards
from llmworks.errors import LlmworksError
from llmworks.families.gpt.settings import WindowDataConfig, check_windows

if TYPE_CHECKING:
    from llmworks.data.streaming import Stream


class Windows(Dataset):
    """Window ``i`` is ``tokens[starts[i] : starts[i] + block_size + 1]`` as ``(x, y)``.

    The memory map is opened lazily in each process (dataloader workers, DDP ranks)."""

    def __init__(self, path: Path, dtype: str, starts: np.ndarray, block_size: int):
        self.path, self.dtype, self.starts, self.block_size = path, dtype, starts, block_size
        self._tokens: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r")
        s = int(self.starts[i])
        chunk = torch.from_numpy(self._tokens[s : s + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


def shifted(index: int, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A streamed block of ``block_size + 1`` tokens as ``(x, y)``, as ``Windows`` gives."""
    return block[:-1], block[1:]


class WindowDataModule(L.LightningDataModule):
    """Train, validation and test windows of ``block_size + 1`` tokens from one tokenizer's
    shards (``tokenizer_json`` checks that the shards were made by it); with ``stream``, the
    training windows stream from its litdata chunks."""

    def __init__(
        self,
        shards_root: str | Path,
        tokenizer_json: str | Path | None,
        block_size: int,
        data: WindowDataConfig,
        seed: int,
        stream: Stream | None = None,
    ):
        super().__init__()
        self.stream = stream
        self.shards_root, self.tokenizer_json = Path(shards_root), tokenizer_json
        self.block_size, self.batch_size = block_size, data.batch_size
        self.val_windows, self.num_workers, self.seed = data.val_windows, data.num_workers, seed
        self.shards: TokenShards | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.shards is None:
            self.shards = open_shards(self.shards_root, self.tokenizer_json)
        if stage in (None, "fit", "validate") and not hasattr(self, "val"):
            self.train = self.windows("train", None) if self.stream is None else None
            self.val = self.windows("validation", self.val_windows)

    def windows(self, split: str, limit: int | None = None) -> Windows:
        """Non-overlapping windows of a split; with ``limit``, that many spread evenly over it."""
        tokens = self.shards.split(split).tokens
        check_windows(self.shards_root, split, len(tokens), self.block_size)
        n = (len(tokens) - 1) // self.block_size
        starts = np.arange(n, dtype=np.int64) * self.block_size
        if limit is not None and n > limit:  # evenly spread, fixed for the whole run
            starts = starts[np.linspace(0, n - 1, limit).round().astype(np.int64)]
        return Windows(
            self.shards_root / f"{split}.bin", self.shards.meta["dtype"], starts, self.block_size
        )

    def text_per_token(self, split: str) -> TextPerToken | None:
        if self.shards is None:
            self.shards = open_shards(self.shards_root, self.tokenizer_json)
        return self.shards.text_per_token(split)

    def train_dataloader(self) -> DataLoader:
        rank, world = rank_and_world(self.trainer)
        if self.stream is not None:
            blocks = self.stream.blocks(self.block_size + 1, self.seed, shifted)
            return self.stream.loader(blocks, self.batch_size, self.num_workers, self.trainer)
        if len(self.train) < world * self.batch_size:
            raise LlmworksError(
                f"{len(self.train)} training windows cannot fill one batch of {self.batch_size} "
                f"on each of {world} processes; lower batch_size or block_size"
            )
        # Lightning calls set_epoch on it, which reseeds the permutation each epoch
        sampler = TrainSampler(
            self.train, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
        )
        # resuming mid-epoch: skip the batches of this epoch that were already trained on
        sampler.start = resume_point(self.trainer)[1] * self.batch_size
        return DataLoader(
            self.train,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=loader_generator(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        rank, world = rank_and_world(self.trainer)
        return DataLoader(
            self.val,
            batch_size=self.batch_size,
            sampler=EvalSampler(self.val, world, rank),
            num_workers=self.num_workers,
            generator=loader_generator(self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        """Every non-overlapping window of the test split, in order (one process)."""
        self.setup("test")
        return DataLoader(
            self.windows("test"), batch_size=self.batch_size, generator=loader_generator(self.seed)
        )
