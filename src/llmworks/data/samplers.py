"""What every family's data loaders share: samplers that split data between DDP ranks without
duplicates, resume in the middle of an epoch, and draw from their own random streams.

- ``TrainSampler``: a seeded permutation per epoch, every ``world_size``-th item per rank, and
  a ``start`` to continue an interrupted epoch where it stopped;
- ``EvalSampler``: rank ``r`` takes items ``r, r + w, ...``, so reduced validation sums count
  every item once;
- ``resume_point``: where a run resumed from a checkpoint goes on (epoch, batches done);
- ``loader_generator``: a loader's own generator, so a resumed run draws what the
  uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import Dataset, DistributedSampler


class EvalSampler(DistributedSampler):
    """Rank ``r`` of ``w`` takes items ``r, r + w, ...``: no padding, no duplicates.

    A ``DistributedSampler`` subclass so Lightning does not wrap it in another one."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class TrainSampler(DistributedSampler):
    """``DistributedSampler`` (seeded permutation per epoch, every ``world_size``-th index per
    rank) that can begin its next epoch at ``start``: a run resumed mid-epoch continues the
    interrupted epoch where it stopped instead of repeating its first items."""

    start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


def loader_generator(seed: int) -> torch.Generator:
    """A DataLoader's own generator: creating an iterator then draws its base seed from it,
    not from torch's global stream, which dropout uses and a resumed run restores from its
    checkpoint -- so a resumed run draws exactly what the uninterrupted one drew."""
    return torch.Generator().manual_seed(seed)


def resume_point(trainer: L.Trainer | None) -> tuple[int, int]:
    """``(epoch, batches of it already trained)`` where a run resumed from a checkpoint goes
    on, read from Lightning's restored loop progress when the training data loader is made
    (``(0, 0)`` for a fresh run). A checkpoint written after an epoch's last batch resumes at
    the start of the next epoch."""
    if trainer is None:
        return 0, 0
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.is_last_batch:
        return trainer.current_epoch + 1, 0
    return trainer.current_epoch, int(progress.current.completed)


def rank_and_world(trainer: L.Trainer | None) -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` outside a Trainer)."""
    return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
