"""Training data beyond one filesystem: the training split as litdata chunks, streamed.

With ``data.backend=litdata`` the encode stage writes the training split a second time, as
litdata chunks of the same token stream (``write_chunks``: litdata's ``BinaryWriter`` with
its ``TokensLoader`` layout, one chunk in memory at a time), and GPT and BERT read them
through litdata's ``StreamingDataset`` and ``StreamingDataLoader`` (``Stream``): from the
encode stage's folder, or from an object store holding a copy of it (``data.litdata_dir``;
remote chunks are cached on local disk as they are read).

What litdata does for us: blocks of a fixed number of tokens cut end to end within each chunk
(litgpt's layout), a seeded shuffle that changes every epoch, a disjoint share of the blocks
for each DDP rank (``drop_last``: the same number on every rank), and a loader state that
Lightning keeps in every checkpoint. ``ResumableLoader`` keeps that loader in step with
Lightning's loop (its epoch, the batches it trained), so a resumed run trains on exactly the
batches an uninterrupted one would.

Imported only when the backend is litdata: the default (memory-mapped) path never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import litdata.helpers
import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset, TokensLoader
from litdata.streaming.sampler import ChunkedIndex
from litdata.streaming.writer import BinaryWriter

from llmworks.data.samplers import rank_and_world, resume_point
from llmworks.errors import LlmworksError

# Every StreamingDataset asks PyPI for a newer litdata (a request with a 30 s timeout, no
# switch to turn it off): a training stage must not wait on the network, nor call it offline.
litdata.helpers._get_newer_version = lambda current_version: None


def write_chunks(tokens_bin: Path, dtype: np.dtype, out_dir: Path, chunk_tokens: int) -> int:
    """Write the token stream of ``tokens_bin`` to ``out_dir`` as litdata chunks of
    ``chunk_tokens`` tokens (the last one shorter), read and written one chunk at a time;
    returns the number of chunks. Concatenated, the chunks hold exactly the ``.bin``'s
    tokens."""
    tokens = np.memmap(tokens_bin, dtype=dtype, mode="r") if tokens_bin.stat().st_size else []
    if len(tokens) == 0:
        raise LlmworksError(f"{tokens_bin}: the split holds no tokens to write as chunks")
    out_dir.mkdir(parents=True)
    # one item per chunk: the writer closes a chunk when the next item would overflow it
    writer = BinaryWriter(str(out_dir), chunk_size=chunk_tokens, item_loader=TokensLoader())
    starts = range(0, len(tokens), chunk_tokens)
    for i, start in enumerate(starts):
        writer.add_item(i, np.array(tokens[start : start + chunk_tokens]))
    writer.done()
    writer.merge()
    return len(starts)


class TokenBlocks(StreamingDataset):
    """Blocks of ``block`` tokens of a chunked token stream, as int64, each passed with its
    index through ``transform`` (the index seeds BERT's masks: the same block gets the same
    mask in a resumed run)."""

    def __init__(
        self,
        source: str,
        block: int,
        seed: int,
        transform: Callable[[int, torch.Tensor], Any],
        cache_dir: str | None = None,
        shuffle: bool = True,
    ):
        super().__init__(
            source,
            cache_dir=cache_dir,
            item_loader=TokensLoader(block_size=block),
            shuffle=shuffle,
            drop_last=True,  # every rank gets the same number of blocks
            seed=seed,
        )
        self.transform = transform

    def __getitem__(self, index: ChunkedIndex | int) -> Any:
        tokens = super().__getitem__(index)
        i = index.index if isinstance(index, ChunkedIndex) else int(index)
        return self.transform(i, torch.from_numpy(np.asarray(tokens, dtype=np.int64)))


class ResumableLoader(StreamingDataLoader):
    """litdata's loader, kept in step with Lightning's loop.

    Lightning saves this loader's ``state_dict`` in each checkpoint and hands it back through
    ``load_state_dict`` on resume; litdata then skips what the state says was drawn. Two
    things are taken from Lightning's own loop instead of litdata's counters, as the
    memory-mapped path's samplers take them (``llmworks.data.samplers``):

    - the epoch, which seeds the shuffle: ``epoch()`` when an iteration begins, Lightning's
      epoch as the memory-mapped samplers get it through ``set_epoch`` (litdata counts its
      iterations itself; across a resume the two must not drift apart);
    - the batches of the epoch already trained, ``trained`` (``resume_point``): nothing is
      restored when the checkpoint closed an epoch, and otherwise the count restored is what
      Lightning's loop completed (litdata counts what it yielded), as the memory-mapped
      samplers resume.
    """

    def __init__(
        self,
        dataset: TokenBlocks,
        batch_size: int,
        num_workers: int,
        epoch: Callable[[], int] | None = None,
        trained: int = 0,
        collate_fn: Callable[[list], Any] | None = None,
    ):
        super().__init__(
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            drop_last=True,
            collate_fn=collate_fn,
        )
        self.epoch, self.trained = epoch, trained

    def __iter__(self) -> Iterator[Any]:
        restoring = self.restore
        if self.epoch is not None:  # litdata's epochs count from 1; a new one adds 1 itself
            self.current_epoch = self.epoch() + (1 if restoring else 0)
            if restoring:
                self.dataset._state_dict["current_epoch"] = self.current_epoch
        for i, batch in enumerate(super().__iter__()):
            if restoring and i == 0:
                # litdata forgets the restored state only when an iteration runs to its end,
                # but Lightning leaves an epoch's iterator once it has counted its batches:
                # the next epoch would replay the resumed one. Forget it once it is in use.
                self.restore = False
                self.dataset.reset_state_dict()
            yield batch

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        if self.trained == 0:  # nothing of the current epoch to skip
            return
        samples = self.trained * self.batch_size
        dataset = {**obj["dataset"], "num_samples_yielded": samples}
        super().load_state_dict({**obj, "dataset": dataset, "num_samples_yielded": samples})


@dataclass(frozen=True)
class Stream:
    """Where one tokenizer's training chunks are read from: ``source``, a local folder or an
    object-store URL (``s3://``, ``gs://``, ``local:/dir``, which litdata reads as a remote),
    and ``cache_dir``, where remote chunks are kept once read. ``DataConfig.stream`` makes
    one after ``check_chunks``."""

    source: str
    cache_dir: str | None

    def blocks(self, block: int, seed: int, transform: Callable[[int, torch.Tensor], Any]):
        """The training split's blocks of ``block`` tokens, shuffled by ``seed`` per epoch."""
        return TokenBlocks(self.source, block, seed, transform, cache_dir=self.cache_dir)

    def loader(
        self,
        blocks: TokenBlocks,
        batch_size: int,
        num_workers: int,
        trainer: L.Trainer | None,
        collate_fn: Callable[[list], Any] | None = None,
    ) -> ResumableLoader:
        """Full batches of ``blocks`` on this rank (refused if there is not one per rank),
        in step with ``trainer``'s epochs and resume point."""
        epoch = (lambda: trainer.current_epoch) if trainer is not None else None
        trained = resume_point(trainer)[1]
        loader = ResumableLoader(blocks, batch_size, num_workers, epoch, trained, collate_fn)
        world = rank_and_world(trainer)[1]
        if len(loader) < 1:
            raise LlmworksError(
                f"{self.source}: {len(blocks)} training blocks on this rank cannot fill one batch "
                f"of {batch_size} on each of {world} processes; lower the batch size or the "
                "sequence length, or lower data.chunk_tokens (blocks never span two chunks)"
            )
        return loader
