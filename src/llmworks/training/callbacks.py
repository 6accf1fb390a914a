"""Callbacks of our own, where Lightning's need a small change."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only


class TrainingThroughput(ThroughputMonitor):
    """Lightning's ``ThroughputMonitor`` logging training throughput only.

    It still times validation, to leave it out of the training time, but it does not log
    validation rows: those carry the validation loop's own step numbers, which go backwards
    against the training steps (W&B drops them with a warning; the CSV log gets rows that
    belong to no training step)."""

    @rank_zero_only
    def on_validation_batch_end(
        self, trainer, pl_module, outputs: Any, batch: Any, *args: Any, **kwargs: Any
    ) -> None:
        if trainer.sanity_checking:
            return
        self._update(trainer, pl_module, batch, trainer._evaluation_loop.batch_progress.total.ready)
