"""Preemption: SIGTERM (how SLURM, Kubernetes and ``kill`` ask a job to stop) and SLURM's
early warning, SIGUSR1 (``sbatch --signal=USR1@90``), stop a training stage as a stop, not as
a success and not as a crash.

Lightning already turns SIGTERM into a clean stop: its loops finish the current batch and
raise ``SIGTERMException`` on every rank together. But that exception is a ``SystemExit``
with status 0, so the stage would exit as if it had finished, and nothing is saved, so the
steps since the last regular checkpoint are lost. Here ``SaveOnPreemption`` saves
``last.ckpt`` at the step the signal stopped, with the run's stamp (it is an ordinary
Lightning checkpoint: the rerun resumes from it exactly as from any other), and ``fit``
turns the exception into ``Preempted``: one line, status 128 + the signal number, so DVC,
SLURM and a shell see an unfinished stage. SIGUSR1 is forwarded as SIGTERM, so both take the
same path; Lightning's own SLURM handler (which saves a checkpoint our resume does not read)
is then not installed. A USR1 handler that was there before (submitit's, which requeues the
job) still gets the signal, after the save. Requeueing belongs to the job script or launcher.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from llmworks.errors import Preempted

log = logging.getLogger(__name__)


class SaveOnPreemption(Callback):
    """Saves ``last.ckpt`` when Lightning stops the run for a SIGTERM (or a forwarded
    SIGUSR1), and remembers which signal it was. Every rank takes part in the save, as in
    any checkpoint (FSDP gathers shards).

    Only a SIGTERM stop is saved: any other exception may have left a step half done,
    and then the last regular checkpoint is the one to trust."""

    def __init__(self, path: Path):
        self.path = path
        self.signum = signal.SIGTERM
        self.saved: Path | None = None
        self._previous: Any = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning registers its handlers (which keep one that is already there)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGUSR1, self._forward)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def _forward(self, signum: int, frame: Any) -> None:
        self.signum = signal.Signals(signum)
        os.kill(os.getpid(), signal.SIGTERM)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Stopped after an epoch's last batch, the run was saved with that epoch's batches
        # all counted. Lightning 2.6, resuming from there, begins the next epoch with those
        # counts, so it trains one batch and ends that epoch: the resumed run would drift
        # from the uninterrupted one. A new epoch starts from zero.
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.current.ready >= trainer.num_training_batches:
            progress.reset_on_run()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.sanity_checking:
            return
        trainer.save_checkpoint(self.path)
        self.saved = self.path

    def preempted(self, step: int) -> Preempted:
        """The stop, once the checkpoint is saved; first hands a SIGUSR1 on to the handler
        installed before ours (a launcher that requeues on it)."""
        previous, self._previous = self._previous, None
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, previous)
            if self.signum == signal.SIGUSR1 and callable(previous):
                previous(signal.SIGUSR1, None)
        return Preempted(int(self.signum), step, self.saved)
