"""Stage ``report``: ``<paths.report>/index.html`` from what the other stages wrote, with no
model run here: the corpus statistics, and the sections the evaluate stage recorded in
``report/assets/report.json`` (tokenizers, training, one per model family, the comparison),
then the parts that were not evaluated. The page tells the pipeline's story in that order."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.paths import Paths
from llmworks.report.html import Section, render, table_from_dict
from llmworks.tracking.runs import experiment_group

log = logging.getLogger(__name__)


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def report_sections(paths: Paths) -> list[Section]:
    if not paths.evaluation.is_file():
        raise LlmworksError(f"{paths.evaluation} does not exist; run the evaluate stage first")
    sections: list[Section] = []
    corpus = _read(paths.corpus_stats)
    if corpus:
        splits = {k: v for k, v in corpus.items() if k != "source"}
        name = corpus.get("source", {}).get("name", "?")
        sections.append(Section("Corpus", tables=[(f"Source: {name}", *table_from_dict(splits))]))
    recorded = _read(paths.report_sections) or {"sections": []}
    for s in recorded["sections"]:
        figures = [(caption, paths.assets / name) for caption, name in s["figures"]]
        sections.append(
            Section(
                s["title"],
                tables=[tuple(t) for t in s["tables"]],
                figures=[(c, p) for c, p in figures if p.is_file()],
                html=s["html"],
                samples=s["samples"],
            )
        )
    skipped = _read(paths.skipped)
    if skipped:
        rows = [[part, reason] for part, reason in skipped.items()]
        table = ("Parts the evaluate stage skipped, and why", ["part", "reason"], rows)
        sections.append(Section("Not evaluated", tables=[table]))
    return sections


def report_stage(cfg: DictConfig) -> Path:
    """The ``report`` stage: write ``index.html`` next to ``assets/``."""
    paths = Paths.from_config(cfg)
    sections = report_sections(paths)
    title = f"llmworks report: {experiment_group(cfg)}"
    subtitle = (
        "Every model of the pipeline measured on the held-out test split. "
        "Reproduce with `dvc repro`; compare runs with `dvc metrics diff` or in W&B."
    )
    index = render(title, subtitle, sections, paths.report_index.parent)
    log.info("report: %s", index)
    return index
