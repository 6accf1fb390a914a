"""A Lightning callback for tests (``+callbacks.signal_at=...`` with ``tests/`` on
PYTHONPATH): the training process sends itself a signal at an exact point, once -- a
deterministic stand-in for a scheduler's SIGTERM or SLURM's SIGUSR1."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    """Sends ``name`` (e.g. ``SIGTERM``) to this process after training step ``step``
    (``phase="train"``) or at the first validation batch from that step on
    (``phase="validation"``), unless the file ``once`` exists; creates it when it fires."""

    def __init__(self, step: int, once: str, name: str = "SIGTERM", phase: str = "train"):
        self.step, self.once, self.name, self.phase = step, Path(once), name, phase

    def _fire(self) -> None:
        if not self.once.exists():
            self.once.touch()
            os.kill(os.getpid(), getattr(signal, self.name))

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if self.phase == "train" and trainer.global_step == self.step:
            self._fire()

    def on_validation_batch_end(self, trainer, *args, **kwargs) -> None:
        late_enough = trainer.global_step >= self.step
        if self.phase == "validation" and not trainer.sanity_checking and late_enough:
            self._fire()


class PauseAt(Callback):
    """Holds training after step ``step`` until the process receives SIGTERM (at most
    ``timeout`` seconds), writing the file ``ready`` as it starts to wait: a signal sent from
    outside once ``ready`` exists lands at that step however fast training runs. Does
    nothing when ``ready`` exists already (the rerun)."""

    def __init__(self, step: int, ready: str, timeout: float = 120.0):
        self.step, self.ready, self.timeout = step, Path(ready), timeout

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        if trainer.global_step != self.step or self.ready.exists():
            return
        self.ready.touch()
        end = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < end:
            time.sleep(0.02)
