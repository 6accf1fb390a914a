"""Stage 1 -- raw text to clean, split documents: ``sources`` (where text comes from),
``clean`` (normalisation and the split by document hash), ``prepare`` (the stage)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def describe(corpus: DictConfig) -> dict[str, Any]:
    """The parts of the corpus config that identify the source, for stats and logs."""
    keys = ("name", "source", "path", "config_name", "data_files", "max_documents")
    plain: dict[str, Any] = OmegaConf.to_container(corpus, resolve=True)  # type: ignore[assignment]
    return {k: plain.get(k) for k in keys} | {"split_by": plain["split"]["by"]}
