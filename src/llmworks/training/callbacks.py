"""Callbacks of our own, where Lightning's need a small change."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar, ThroughputMonitor
from lightning.pytorch.utilities import rank_zero_only

from llmworks.errors import LlmworksError

log = logging.getLogger("llmworks.progress")

# what ThroughputMonitor logs on rank 0: tokens (the modules' ``tokens_in_batch``) per second
# and device (a rolling window), and the running totals of tokens and seconds it divides
TOKENS_PER_S_PER_DEVICE = "train/device/items_per_sec"
TOKENS, SECONDS = "train/lengths", "train/time"


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

    def __init__(self, hint: str):
        self.hint = hint  # what to change, in the family's own keys

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
                f"{self.hint[:1].upper()}{self.hint[1:]} and run again"
            )


class Speed:
    """Tokens per second (all ranks) over the batches since the last reading, and MFU where
    Lightning knows the device's peak FLOP/s for its precision."""

    def __init__(self) -> None:
        self.tokens, self.flops, self.t0 = 0, 0.0, time.perf_counter()
        self.peak: float | None = None

    def setup(self, trainer) -> None:
        from lightning.fabric.utilities.throughput import get_available_flops
        from lightning.pytorch.callbacks.throughput_monitor import _plugin_to_compute_dtype

        dtype = _plugin_to_compute_dtype(trainer.precision_plugin)
        device = trainer.strategy.root_device
        self.peak = get_available_flops(device, dtype) if device.type == "cuda" else None

    def add(self, trainer, pl_module, batch: Any) -> None:
        self.tokens += pl_module.tokens_in_batch(batch) * trainer.world_size
        self.flops += (getattr(pl_module, "flops_per_batch", None) or 0.0) * trainer.world_size

    def read(self, world_size: int) -> dict[str, float]:
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        out = {"tokens/s": self.tokens / seconds}
        if self.peak and self.flops:
            out["mfu"] = self.flops / seconds / (self.peak * world_size)
        self.tokens, self.flops, self.t0 = 0, 0.0, time.perf_counter()
        return out


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar (for a terminal), with tokens/s and, on a GPU, MFU next
    to the loss."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.speed = Speed()
        self.shown: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self.speed.setup(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.speed.add(trainer, pl_module, batch)
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self.shown = self.speed.read(trainer.world_size)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics | {
            k: f"{v:.3g}" if k == "mfu" else f"{v:,.0f}" for k, v in self.shown.items()
        }


class ProgressLog(Callback):
    """Progress as plain log lines, for output that is not a terminal (``dvc repro``, SLURM,
    CI): every ``every_n_steps`` steps the step, the share done, the loss, the last validation,
    tokens/s (MFU on a GPU) and the time left; one line at each validation."""

    def __init__(self, every_n_steps: int):
        self.every_n_steps = every_n_steps
        self.speed = Speed()
        self.start = time.perf_counter()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.speed.setup(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self.start, self.first = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.speed.add(trainer, pl_module, batch)
        step = trainer.global_step
        if step % self.every_n_steps == 0 and trainer.is_global_zero:
            log.info("%s", self._line(trainer, step, self.speed.read(trainer.world_size)))

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        shown = {
            k: v
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val_") and k not in ("val_tokens", "val_examples")  # counts
        }
        log.info("step %d validation: %s", trainer.global_step, _fmt(shown))

    def _line(self, trainer, step: int, speed: dict[str, float]) -> str:
        total = trainer.max_steps if trainer.max_steps > 0 else None
        if total is None and trainer.max_epochs and trainer.num_training_batches != float("inf"):
            total = int(trainer.max_epochs * trainer.num_training_batches)
        done = (step - self.first) / max(time.perf_counter() - self.start, 1e-9)
        loss = trainer.callback_metrics.get("train_loss")
        parts = [f"step {step}" + (f"/{total} ({step / total:.0%})" if total else "")]
        if loss is not None:
            parts.append(f"train_loss {float(loss):.4g}")
        parts.append(_fmt(speed))
        if total and done > 0:
            parts.append(f"{_clock((total - step) / done)} left")
        return ", ".join(parts)


def _fmt(metrics: dict[str, Any]) -> str:
    return " ".join(
        f"{k} {float(v):.3g}" if k == "mfu" or abs(float(v)) < 1000 else f"{k} {float(v):,.0f}"
        for k, v in metrics.items()
    )


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s"
