"""Weights & Biases runs for every stage, set up so that logging can never break training.

One run per stage per experiment: ``group`` is the experiment (``DVC_EXP_NAME`` when DVC
runs it, else ``experiment_name``), ``job_type`` the stage, and the config is the full
resolved one. Offline unless told otherwise; a failure to start W&B logs a warning and the
stage goes on without it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def experiment_group(cfg: DictConfig) -> str:
    return os.environ.get("DVC_EXP_NAME") or str(cfg.experiment_name)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def enabled(cfg: DictConfig) -> bool:
    """``logger=none`` (mode disabled) means no W&B, whatever ``WANDB_MODE`` says."""
    return str(cfg.logger.mode) != "disabled"


def _mode(cfg: DictConfig) -> str:
    return os.environ.get("WANDB_MODE") or str(cfg.logger.mode)


def _run_kwargs(cfg: DictConfig, job_type: str) -> dict[str, Any]:
    """What every stage's run shares: the W&B settings of ``conf/logger`` and the run's place
    in the experiment."""
    import wandb

    Path(str(cfg.logger.dir)).mkdir(parents=True, exist_ok=True)
    group = experiment_group(cfg)
    return dict(
        group=group,
        job_type=job_type,
        name=f"{group}-{job_type}",
        mode=_mode(cfg),
        config=resolved_config(cfg),
        # a short summary at the end instead of the per-metric sparkline table
        settings=wandb.Settings(quiet=True),
    )


def wandb_logger(cfg: DictConfig, job_type: str, run_id: str | None = None):
    """The Lightning logger of ``conf/logger`` (``_target_``) for a training stage, or None
    when W&B is disabled or cannot start. ``run_id`` continues that run (a resumed training
    run stays one W&B run). Lightning creates the run on rank 0 only, so DDP gives one run."""
    if not enabled(cfg):
        return None
    try:
        from hydra.utils import get_class

        # instantiate() itself takes `config` (W&B's run config here): call the class
        settings = OmegaConf.to_container(cfg.logger, resolve=True)
        logger_cls = get_class(settings.pop("_target_"))
        settings |= {"save_dir": settings["dir"], "id": run_id} | _run_kwargs(cfg, job_type)
        return logger_cls(**settings)
    except Exception as exc:  # logging must never stop training
        warnings.warn(f"W&B logger unavailable, continuing without it: {exc}", stacklevel=2)
        return None


def finish_wandb(logger: Any | None) -> None:
    """End a training stage's W&B run, so the next stage or multirun job starts its own."""
    if logger is None:
        return
    try:
        import wandb

        wandb.finish()
    except Exception as exc:  # logging must never stop training
        log.warning("wandb.finish failed: %s", exc)


@contextmanager
def wandb_run(cfg: DictConfig, job_type: str) -> Iterator[Any]:
    """A W&B run for a stage that is not a Lightning fit (corpus, tokenizer, evaluation),
    with the settings of ``conf/logger``.

    Yields the run, or ``None`` when W&B is disabled or failed to start; always finishes the
    run so that multirun jobs do not share one.
    """
    run = None
    if enabled(cfg):
        try:
            import wandb

            settings = OmegaConf.to_container(cfg.logger, resolve=True)
            for key in ("_target_", "log_model", "mode"):
                settings.pop(key, None)
            run = wandb.init(reinit="finish_previous", **settings, **_run_kwargs(cfg, job_type))
        except Exception as exc:
            warnings.warn(f"W&B unavailable, continuing without it: {exc}", stacklevel=2)
            run = None
    try:
        yield run
    finally:
        if run is not None:
            try:
                run.finish()
            except Exception as exc:
                log.warning("W&B finish failed: %s", exc)


def log_metrics(run: Any, metrics: dict[str, Any], prefix: str = "") -> None:
    """Log flat numeric metrics to a run (if any) and put them in its summary."""
    if run is None:
        return
    flat = {f"{prefix}{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
    try:
        run.log(flat)
        run.summary.update(flat)
    except Exception as exc:
        log.warning("W&B logging failed: %s", exc)


def log_images(run: Any, images: dict[str, str | Path]) -> None:
    """Log PNG files as W&B images under their keys (nothing without a run)."""
    if run is None or not images:
        return
    try:
        import wandb

        run.log({key: wandb.Image(str(path)) for key, path in images.items()})
    except Exception as exc:
        log.warning("W&B image logging failed: %s", exc)


def log_table(run: Any, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Log rows as a W&B table (samples, comparisons) that the UI can sort and filter."""
    if run is None:
        return
    try:
        import wandb

        run.log({key: wandb.Table(columns=columns, data=rows)})
    except Exception as exc:
        log.warning("W&B table logging failed: %s", exc)


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """Config, summary and state of an offline run, read back from its ``.wandb`` log.

    Offline runs keep no ``wandb-summary.json``; ``wandb leet inspect`` replays the log.
    """
    import json
    import shutil
    import subprocess

    exe = shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))
    out = subprocess.run(
        [exe, "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    info = json.loads(out.stdout)
    run = next(r.run for r in _records(run_dir) if r.WhichOneof("record_type") == "run")
    return info | {"group": run.run_group, "job_type": run.job_type}


def _records(run_dir: str | Path) -> Iterator[Any]:
    """The protobuf records of an offline run's ``.wandb`` file (a LevelDB-style log: 32 KiB
    blocks of chunks, each with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = next(Path(run_dir).glob("*.wandb")).read_bytes()
    block, header, pos, pending = 32768, 7, 7, b""  # the file opens with a 7-byte ":W&B" header
    while pos + header <= len(data):
        left = block - pos % block
        if left < header:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4):  # FULL or LAST: a whole record is buffered
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_runs(wandb_dir: str | Path) -> list[Path]:
    """The offline run directories under a W&B directory, oldest first."""
    root = Path(wandb_dir)
    root = root / "wandb" if (root / "wandb").is_dir() else root
    return sorted(root.glob("offline-run-*"))
