"""Weights & Biases runs for every stage, set up so that logging can never break a stage.

One run per stage per experiment: ``group`` is the experiment (``DVC_EXP_NAME`` when DVC
runs it, else ``experiment_name``), ``job_type`` the stage, and the config is the full
resolved one. Offline unless told otherwise; online that cannot start falls back to offline
within ``logger.init_timeout`` seconds, and a W&B that cannot start at all logs a warning
while the stage goes on without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed
from llmworks.errors import LlmworksError

try:  # logging must never stop a stage, not even a W&B that does not import
    import wandb
except Exception as exc:  # pragma: no cover - a broken install
    wandb = None
    _IMPORT_ERROR: Exception | None = exc
else:
    _IMPORT_ERROR = None

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
ARTIFACTS = ("reference", "upload", "none")


@dataclass(frozen=True)
class LoggerConfig:
    """The ``logger`` section (``conf/logger/``)."""

    mode: str  # online | offline | disabled (WANDB_MODE in the environment wins)
    project: str
    entity: str | None
    dir: str  # offline runs go to <dir>/wandb, relative to the main workspace under DVC
    tags: list[str]
    log_model: bool  # Lightning's WandbLogger: upload checkpoints as artifacts
    init_timeout: float  # seconds to reach the server online before logging offline
    artifacts: str  # lineage: reference | upload | none

    def __post_init__(self) -> None:
        for key, allowed in (("mode", MODES), ("artifacts", ARTIFACTS)):
            if getattr(self, key) not in allowed:
                raise LlmworksError(
                    f"logger.{key}={getattr(self, key)!r}: expected one of {allowed}"
                )


def logger_config(cfg: DictConfig) -> LoggerConfig:
    """``cfg.logger`` typed: a bad mode or a misspelled key is refused before any work."""
    return typed(LoggerConfig, cfg.logger, "logger")


def experiment_group(cfg: DictConfig) -> str:
    return os.environ.get("DVC_EXP_NAME") or str(cfg.experiment_name)


def enabled(cfg: DictConfig) -> bool:
    """``logger=none`` (mode disabled) means no W&B, whatever ``WANDB_MODE`` says."""
    return logger_config(cfg).mode != "disabled"


def wandb_dir(cfg: DictConfig) -> Path:
    """Where offline runs are written: ``logger.dir``, relative to the main workspace.

    ``dvc exp run --temp`` and ``--queue`` run each experiment in a temporary copy of the
    workspace (``.dvc/tmp/exps/...``) that DVC deletes afterwards; DVC tells a stage the main
    workspace in ``DVC_ROOT``, so the runs of every experiment land in one ``wandb/`` that
    outlives them (`wandb sync wandb/offline-run-*` uploads them all)."""
    path = Path(logger_config(cfg).dir).expanduser()
    root = os.environ.get("DVC_ROOT")
    return path if path.is_absolute() or not root else Path(root) / path


def job_type(default: str) -> str:
    """The stage's name: DVC's (``DVC_STAGE``, e.g. ``train_tokenizer@bpe``) under DVC."""
    return os.environ.get("DVC_STAGE") or default


def _init_kwargs(cfg: DictConfig, job_type: str, run_id: str | None) -> dict[str, Any]:
    """``wandb.init`` arguments: the settings of ``conf/logger`` and the run's place in the
    experiment. ``WANDB_MODE`` in the environment wins over ``logger.mode``."""
    settings = logger_config(cfg)
    run_dir = wandb_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    group = experiment_group(cfg)
    return dict(
        project=settings.project,
        entity=settings.entity,
        tags=list(settings.tags),
        dir=str(run_dir),
        mode=os.environ.get("WANDB_MODE") or settings.mode,
        group=group,
        job_type=job_type,
        name=f"{group}-{job_type}",
        id=run_id,
        resume="allow" if run_id else None,
        config=OmegaConf.to_container(cfg, resolve=True),
        reinit="finish_previous",
        # a short summary at the end instead of the per-metric sparkline table; give up on
        # an unreachable server after init_timeout seconds instead of W&B's 90
        settings=wandb.Settings(quiet=True, init_timeout=float(settings.init_timeout)),
    )


def start_run(cfg: DictConfig, job_type: str, run_id: str | None = None) -> Any | None:
    """A W&B run for a stage, or None when W&B is disabled or cannot start at all.

    Online without an API key, or with a server it cannot reach within
    ``logger.init_timeout`` seconds, it logs offline instead (``wandb sync`` uploads later):
    the metrics are kept, and the stage never waits long nor stops because of logging.
    ``run_id`` continues that run (a training stage resumed after a crash)."""
    if not enabled(cfg):
        return None
    if wandb is None:
        log.warning("W&B unavailable, continuing without it: %s", _IMPORT_ERROR)
        return None
    try:
        kwargs = _init_kwargs(cfg, job_type, run_id)
    except Exception as exc:  # logging must never stop a stage
        log.warning("W&B unavailable, continuing without it: %s", exc)
        return None
    try:
        return wandb.init(**kwargs)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        if kwargs["mode"] != "online":
            log.warning("W&B unavailable, continuing without it: %s", reason)
            return None
        log.warning(
            "W&B online failed (%s); logging offline to %s/wandb instead "
            "(upload later with `wandb sync`)",
            reason,
            kwargs["dir"],
        )
    try:
        wandb.teardown()  # the failed attempt still holds the run id
        return wandb.init(**(kwargs | {"mode": "offline"}))
    except Exception as exc:
        log.warning("W&B unavailable, continuing without it: %s", exc)
        return None


def wandb_logger(cfg: DictConfig, job_type: str, run_id: str | None = None):
    """Lightning's ``WandbLogger`` around a run started by ``start_run``, or None. Call it on
    rank 0 only: DDP then gives one run."""
    run = start_run(cfg, job_type, run_id)
    if run is None:
        return None
    try:
        from lightning.pytorch.loggers import WandbLogger

        settings = logger_config(cfg)
        return WandbLogger(experiment=run, save_dir=settings.dir, log_model=settings.log_model)
    except Exception as exc:  # logging must never stop training
        log.warning("W&B logger unavailable, continuing without it: %s", exc)
        finish_wandb(run)
        return None


def finish_wandb(
    logger_or_run: Any | None, exit_code: int | None = None, preempted: bool = False
) -> None:
    """End a stage's W&B run, so the next stage or multirun job starts its own. A run
    stopped by a signal is marked preempting and ends with the stage's exit status: W&B
    shows it as stopped, not finished, and the rerun continues the same run."""
    if logger_or_run is None or wandb is None:
        return
    try:
        if preempted:
            getattr(logger_or_run, "experiment", logger_or_run).mark_preempting()
        wandb.finish(exit_code=exit_code)
    except Exception as exc:  # logging must never stop a stage
        log.warning("wandb.finish failed: %s", exc)


@contextmanager
def wandb_run(cfg: DictConfig, job_type: str) -> Iterator[Any]:
    """A W&B run for a stage that is not a Lightning fit (corpus, tokenizer, evaluation).

    Yields the run, or ``None`` when W&B is disabled or failed to start; always finishes the
    run so that multirun jobs do not share one.
    """
    run = start_run(cfg, job_type)
    try:
        yield run
    finally:
        finish_wandb(run)


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
        run.log({key: wandb.Image(str(path)) for key, path in images.items()})
    except Exception as exc:
        log.warning("W&B image logging failed: %s", exc)


def log_table(run: Any, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Log rows as a W&B table (samples, comparisons) that the UI can sort and filter."""
    if run is None:
        return
    try:
        run.log({key: wandb.Table(columns=columns, data=rows)})
    except Exception as exc:
        log.warning("W&B table logging failed: %s", exc)
