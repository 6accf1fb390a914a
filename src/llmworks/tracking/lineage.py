"""W&B lineage: what each stage read and produced, as W&B Artifacts that carry the DVC hash
of their path, so the W&B lineage graph and ``dvc.lock`` name the same content.

Offline, W&B records the artifacts a run logs but not the ones it uses: each run writes its
inputs (name, type, digest, DVC hash) into its config, and ``llmworks-sync`` marks them as
used after uploading.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmworks.tracking.runs import logger_config, wandb

log = logging.getLogger(__name__)


def dvc_hash(path: str | Path) -> str:
    """The md5 DVC records for ``path`` in ``dvc.lock`` (``<md5>.dir`` for a directory)."""
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
    (``file://``; no second copy of large data) that carries the DVC hash of the path;
    ``logger.artifacts=upload`` copies the files into W&B instead."""
    path = Path(path).resolve()
    meta = {"path": str(path), "dvc_md5": dvc_hash(path)} | (metadata or {})
    art = wandb.Artifact(name, type=kind, metadata=meta)
    if logger_config(cfg).artifacts == "upload":
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
    if run is None or logger_config(cfg).artifacts == "none" or run.settings.mode == "disabled":
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
