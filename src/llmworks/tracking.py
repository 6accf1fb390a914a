"""Weights & Biases runs for every stage, set up so that logging can never break training.

One run per stage per experiment: ``group`` is the experiment (``DVC_EXP_NAME`` when DVC
runs it, else ``experiment_name``), ``job_type`` the stage, and the config is the full
resolved one. Offline unless told otherwise; online that cannot start falls back to offline
within ``logger.init_timeout`` seconds, and a W&B that cannot start at all logs a warning
while the stage goes on without it.
"""

from __future__ import annotations

import logging
import os
import sys
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


MODES = ("online", "offline", "disabled")
ARTIFACTS = ("reference", "upload", "none")


def enabled(cfg: DictConfig) -> bool:
    """``logger=none`` (mode disabled) means no W&B, whatever ``WANDB_MODE`` says."""
    return str(cfg.logger.mode) != "disabled"


def check_logger(cfg: DictConfig) -> None:
    """Settings of ``conf/logger`` that can be wrong, refused before any work."""
    from llmworks.errors import LlmworksError

    for key, allowed in (("mode", MODES), ("artifacts", ARTIFACTS)):
        if str(cfg.logger[key]) not in allowed:
            raise LlmworksError(f"logger.{key}={cfg.logger[key]!r}: expected one of {allowed}")


def wandb_dir(cfg: DictConfig) -> Path:
    """Where offline runs are written: ``logger.dir``, relative to the main workspace.

    ``dvc exp run --temp`` and ``--queue`` run each experiment in a temporary copy of the
    workspace (``.dvc/tmp/exps/...``) that DVC deletes afterwards; DVC tells a stage the main
    workspace in ``DVC_ROOT``, so the runs of every experiment land in one ``wandb/`` that
    outlives them (`wandb sync wandb/offline-run-*` uploads them all)."""
    path = Path(str(cfg.logger.dir)).expanduser()
    root = os.environ.get("DVC_ROOT")
    return path if path.is_absolute() or not root else Path(root) / path


def job_type(default: str) -> str:
    """The stage's name: DVC's (``DVC_STAGE``, e.g. ``train_tokenizer@bpe``) under DVC."""
    return os.environ.get("DVC_STAGE") or default


def _init_kwargs(cfg: DictConfig, job_type: str, run_id: str | None) -> dict[str, Any]:
    """``wandb.init`` arguments: the settings of ``conf/logger`` and the run's place in the
    experiment. ``WANDB_MODE`` in the environment wins over ``logger.mode``."""
    import wandb

    log_cfg = cfg.logger
    run_dir = wandb_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    group = experiment_group(cfg)
    return dict(
        project=str(log_cfg.project),
        entity=log_cfg.entity,
        tags=list(log_cfg.tags),
        dir=str(run_dir),
        mode=os.environ.get("WANDB_MODE") or str(log_cfg.mode),
        group=group,
        job_type=job_type,
        name=f"{group}-{job_type}",
        id=run_id,
        resume="allow" if run_id else None,
        config=resolved_config(cfg),
        reinit="finish_previous",
        # a short summary at the end instead of the per-metric sparkline table; give up on
        # an unreachable server after init_timeout seconds instead of W&B's 90
        settings=wandb.Settings(quiet=True, init_timeout=float(log_cfg.init_timeout)),
    )


def start_run(cfg: DictConfig, job_type: str, run_id: str | None = None) -> Any | None:
    """A W&B run for a stage, or None when W&B is disabled or cannot start at all.

    Online without an API key, or with a server it cannot reach within
    ``logger.init_timeout`` seconds, it logs offline instead (``wandb sync`` uploads later):
    the metrics are kept, and the stage never waits long nor stops because of logging.
    ``run_id`` continues that run (a training stage resumed after a crash)."""
    if not enabled(cfg):
        return None
    try:
        import wandb

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
    """The Lightning logger of ``conf/logger`` (``_target_``) around a run started by
    ``start_run``, or None. Call it on rank 0 only: DDP then gives one run."""
    run = start_run(cfg, job_type, run_id)
    if run is None:
        return None
    try:
        from hydra.utils import get_class

        logger_cls = get_class(str(cfg.logger._target_))
        return logger_cls(
            experiment=run, save_dir=str(cfg.logger.dir), log_model=cfg.logger.log_model
        )
    except Exception as exc:  # logging must never stop training
        log.warning("W&B logger unavailable, continuing without it: %s", exc)
        finish_wandb(run)
        return None


def finish_wandb(logger_or_run: Any | None) -> None:
    """End a stage's W&B run, so the next stage or multirun job starts its own."""
    if logger_or_run is None:
        return
    try:
        import wandb

        wandb.finish()
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


# ----------------------------------------------------------------------------- artifacts


def dvc_hash(path: str | Path) -> str:
    """The md5 DVC records for ``path`` in ``dvc.lock`` (``<md5>.dir`` for a directory)."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        _, _, obj = build(HashFileDB(fs, tmp), str(Path(path).resolve()), fs, "md5")
    return str(obj.hash_info.value)


def artifact(
    cfg: DictConfig, name: str, kind: str, path: str | Path, metadata: dict[str, Any] | None = None
):
    """A W&B artifact of a stage's input or output: by default a reference to the files
    (``file://``; no second copy of large data) that carries the DVC hash of the path, so the
    W&B lineage and ``dvc.lock`` name the same content; ``logger.artifacts=upload`` copies
    the files into W&B instead."""
    import wandb

    path = Path(path).resolve()
    meta = {"path": str(path), "dvc_md5": dvc_hash(path)} | (metadata or {})
    art = wandb.Artifact(name, type=kind, metadata=meta)
    if str(cfg.logger.artifacts) == "upload":
        art.add_dir(str(path)) if path.is_dir() else art.add_file(str(path))
    else:
        art.add_reference(path.as_uri(), name=None if path.is_dir() else path.name)
    return art


def log_lineage(
    run: Any,
    cfg: DictConfig,
    inputs: dict[str, tuple[str, str | Path]],
    outputs: dict[str, tuple[str, str | Path]],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Record what a stage read (``{name: (type, path)}``) and what it produced as W&B
    artifacts, so the lineage graph shows the pipeline. Offline, W&B cannot record a use:
    the inputs go into the run's config (``inputs``: type, digest, DVC hash), which
    ``llmworks-sync`` turns into uses when it uploads the runs. Never stops a stage."""
    if run is None or str(cfg.logger.artifacts) == "none" or run.settings.mode == "disabled":
        return
    try:
        used = {name: artifact(cfg, name, kind, path) for name, (kind, path) in inputs.items()}
        if run.settings.mode == "offline":
            described = {
                n: {"type": a.type, "digest": a.digest, "dvc_md5": a.metadata["dvc_md5"]}
                for n, a in used.items()
            }
            run.config.update({"inputs": described}, allow_val_change=True)
        else:
            for art in used.values():
                run.use_artifact(art)
        for name, (kind, path) in outputs.items():
            run.log_artifact(artifact(cfg, name, kind, path, metadata))
    except Exception as exc:  # logging must never stop a stage
        log.warning("W&B artifacts not recorded: %s", exc)


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
