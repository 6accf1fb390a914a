"""A run's state (``training/fit.py``): resume only the unfinished run of the same
fingerprint, and a damaged checkpoint named in one line."""

from __future__ import annotations

import pytest
import torch

from llmworks.errors import LlmworksError
from llmworks.training.fit import Run, fingerprint


def _checkpoint(run_dir, fp: str, session: int = 0) -> None:
    path = run_dir / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"fingerprint": fp, "wandb_id": "w1", "session": session}
    torch.save({"global_step": 5, "llmworks": stamp}, path)


def test_resume_only_an_unfinished_run_of_the_same_fingerprint(tmp_path):
    fp = fingerprint({"model": {"n_layer": 2}}, 1337, "data-a")
    assert Run.open(tmp_path, fp).resume_from is None  # nothing to resume
    _checkpoint(tmp_path, fp, session=1)
    run = Run.open(tmp_path, fp)
    assert run.resume_from == tmp_path / "checkpoints" / "last.ckpt"
    assert (run.wandb_id, run.session) == ("w1", 2)  # the same W&B run, its next session
    # another config, seed or data: another run, which does not continue this one
    for other in (
        fingerprint({"model": {"n_layer": 3}}, 1337, "data-a"),
        fingerprint({"model": {"n_layer": 2}}, 1, "data-a"),
        fingerprint({"model": {"n_layer": 2}}, 1337, "data-b"),
    ):
        fresh = Run.open(tmp_path, other)
        assert fresh.resume_from is None and fresh.session == 0 and fresh.wandb_id != "w1"
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()  # nothing deleted up front
    Run.open(tmp_path, fp).mark_finished()
    assert Run.open(tmp_path, fp).resume_from is None  # a finished run is repeated afresh


def test_a_damaged_checkpoint_is_a_one_line_error_naming_it(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LlmworksError, match="last.ckpt cannot be read.*train afresh"):
        Run.open(tmp_path, "fp")


class Killed(BaseException):
    """Stands for the process dying mid-write (not an Exception: nothing may catch it)."""


@pytest.mark.parametrize("safe", [True, False], ids=["ours", "lightning"])
def test_a_kill_while_the_csv_log_widens_leaves_the_rows_before_it(tmp_path, monkeypatch, safe):
    """Lightning's writer truncates ``metrics.csv`` to rewrite it when a new metric widens
    the header; a process killed then kept its checkpoint but lost the rows before it. Ours
    writes a copy and renames it, so the rows survive; Lightning's own writer, run through
    the same kill, shows what the test guards against."""
    import csv

    from lightning.pytorch.loggers import CSVLogger

    from llmworks.training.csv_logger import CrashSafeCSVLogger
    from llmworks.training.logs import read_metrics_csv

    logger = (CrashSafeCSVLogger if safe else CSVLogger)(save_dir=str(tmp_path), version="v")
    for step in range(3):
        logger.log_metrics({"train_loss": 1.0 - step / 10}, step=step)
    logger.save()  # the checkpoint at step 3 saves the log with it
    path = logger.experiment.metrics_file_path
    assert sorted(read_metrics_csv(path)) == [0, 1, 2]

    logger.log_metrics({"val_loss": 2.0}, step=3)  # a new column: the header widens
    writerows = csv.DictWriter.writerows

    def die_after_the_header(self, rows):
        raise Killed

    monkeypatch.setattr(csv.DictWriter, "writerows", die_after_the_header)
    with pytest.raises(Killed):
        logger.save()
    monkeypatch.setattr(csv.DictWriter, "writerows", writerows)
    kept = sorted(read_metrics_csv(path))
    if safe:
        assert kept == [0, 1, 2]
    else:
        assert kept == []  # the truncated file holds only the new header
