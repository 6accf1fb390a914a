"""Lightning's ``CSVLogger``, with a log file that a crash cannot truncate.

Lightning's writer rewrites ``metrics.csv`` in place whenever a metric appears for the first
time (a wider header), truncating it first. A run killed during that rewrite -- a SIGKILL,
an out-of-memory kill, a lost node -- kept its checkpoint but lost the rows logged before
it, so the resumed run's curve started at the checkpoint's step instead of step 0 (seen in
``tests/test_crash_safety.py`` under load). Here every save writes a copy and renames it over
the file, so the file on disk is always a whole log: the one before the save or the one after.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class AtomicExperimentWriter(ExperimentWriter):
    """Lightning's writer, saving through a copy renamed into place (``os.replace``)."""

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        partial = path.with_name(path.name + ".partial")
        if path.is_file():
            shutil.copyfile(path, partial)  # Lightning appends to, or rewrites, this copy
        self.metrics_file_path = str(partial)
        try:
            super().save()
        finally:
            self.metrics_file_path = str(path)
        os.replace(partial, path)


class CrashSafeCSVLogger(CSVLogger):
    """``CSVLogger`` writing through ``AtomicExperimentWriter``; local directories only (the
    run directory of a stage), as ``os.replace`` needs."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AtomicExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AtomicExperimentWriter(log_dir=self.log_dir)
        return self._experiment
