"""Callbacks of our own, where Lightning's need a small change."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only

from llmworks.errors import LlmworksError


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


class StopOnNonFiniteLoss(Callback):
    """Stops training with a clear error as soon as the training loss is NaN or infinite,
    before a checkpoint could save diverged weights: the last good checkpoint stays.

    Checked on the steps the loss is logged anyway (``log_every_n_steps``), so a GPU is not
    made to synchronise every step; under DDP the ranks agree before any of them stops."""

    def __init__(self, family: str):
        self.family = family

    def on_train_batch_end(
        self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % trainer.log_every_n_steps:
            return
        loss = trainer.callback_metrics.get("train_loss")
        bad = loss is not None and not bool(torch.isfinite(loss))
        if trainer.strategy.reduce_boolean_decision(bad, all=False):
            where = getattr(trainer.checkpoint_callback, "dirpath", None) or "the run directory"
            value = float(loss) if loss is not None else float("nan")
            raise LlmworksError(
                f"training diverged: train_loss is {value} at step {step}; stopped before "
                f"saving anything of it (the checkpoints in {where} are the last good ones). "
                f"Lower {self.family}.optim.lr (or raise its warmup) and run again"
            )
