"""What a part of the evaluate stage writes to: a small recorder of metrics, figures, tables
and report sections, with a way to run a part that leaves nothing half-recorded.

``Recorder`` is the protocol a family's ``evaluate(rec)`` sees (``llmworks/families/<name>/
evaluate.py``): where things are (``cfg``, ``paths``, ``device``, ``corpus``, ``assets``) and
where results go (``record``, ``table``, ``figure``, ``html``, ``samples``, ``embedder``,
``skip``). ``Evaluation`` is the stage's implementation: every part runs inside ``run``, which
opens the part's report section and, if the part cannot be evaluated (a model not trained,
artifacts that do not fit together), rolls back what it recorded and lists the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import datasets
import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.paths import Paths
from llmworks.report.html import Section

if TYPE_CHECKING:
    from llmworks.evaluation.embedders import Embedder

log = logging.getLogger(__name__)

Rows = list[list[Any]]


class Recorder(Protocol):
    """The evaluate stage as one part sees it."""

    cfg: DictConfig
    paths: Paths
    device: torch.device  # where models run their forward passes
    corpus: datasets.DatasetDict  # the prepared corpus (its test split is what parts measure)
    assets: Path  # where parts write figures and files for the report

    def record(self, name: str, metrics: Mapping[str, Any], caption: str | None = None) -> None:
        """``metrics`` as ``evaluation.json[name]`` (and W&B ``name/<key>``); with a
        ``caption``, also as a metric/value table in the part's section."""

    def table(
        self, key: str, caption: str, columns: Sequence[str], rows: Rows, log: bool = True
    ) -> None:
        """A table in the part's section, and (``log``) in W&B as ``tables/<key>``."""

    def figure(self, key: str, path: Path | None, caption: str) -> None:
        """A PNG in the part's section, and in W&B as ``figures/<key>`` (None: no figure)."""

    def html(self, block: str) -> None:
        """A block of HTML in the part's section (already escaped)."""

    def samples(self, key: str, settings: Mapping[str, Any], rows: list[dict[str, str]]) -> None:
        """Generated texts (``{prompt, mode, completion}``) and how they were generated, in the
        part's section, and in W&B as ``tables/<key>``."""

    def embedder(self, name: str, embed: Embedder) -> None:
        """Offer a text representation to the comparison of representations."""

    def skip(self, part: str, reason: str) -> None:
        """Say that ``part`` was not evaluated, and why (the report lists it)."""

    def run(self, part: str, title: str, body: Callable[[Recorder], None]) -> None:
        """Run ``body`` as the part ``part`` of the report section ``title``."""


class FamilyEvaluation(Protocol):
    """A family's ``evaluate.py``: its part of the evaluate stage."""

    def settings(self, cfg: DictConfig) -> Any:
        """The family's evaluation settings (``evaluate.<name>``) typed, so a bad one is
        refused before the stage does any work (None when it has none)."""

    def evaluate(self, rec: Recorder) -> None:
        """Measure the family's trained model and record what it found; raising
        ``LlmworksError`` skips the part with that reason."""

    # A family that can score published models of its kind (``evaluate.references``) also
    # has ``REFERENCE_TYPES`` (the transformers ``model_type``s it imports) and
    # ``score_reference(rec, source, path) -> metrics``, its test figures for that model.


class Evaluation:
    """The evaluate stage's recorder (see ``Recorder``)."""

    def __init__(
        self,
        cfg: DictConfig,
        paths: Paths,
        device: torch.device,
        corpus: datasets.DatasetDict,
        assets: Path,
    ):
        self.cfg, self.paths, self.device, self.corpus, self.assets = (
            cfg,
            paths,
            device,
            corpus,
            assets,
        )
        self.metrics: dict[str, Any] = {}
        self.embedders: dict[str, Embedder] = {}
        self.figures: dict[str, Path] = {}  # W&B key -> PNG
        self.tables: dict[str, tuple[list[str], Rows]] = {}  # W&B key -> table
        self.sections: dict[str, Section] = {}  # the report's sections, in order
        self.skipped: dict[str, str] = {}  # part -> why it was not evaluated
        self._section: Section | None = None

    # ------------------------------------------------------------------ parts

    def run(self, part: str, title: str, body: Callable[[Recorder], None]) -> None:
        """Run one part, its figures and tables going to the report section ``title``; if it
        cannot run (a model not trained, artifacts that do not fit together) it is skipped
        with its reason and leaves nothing half-recorded."""
        kept = ("metrics", "embedders", "figures", "tables", "sections")
        before = {k: dict(getattr(self, k)) for k in kept}
        self._section = Section(title)
        try:
            body(self)
            if not self._section.empty:
                self.sections[title] = self._section
        except LlmworksError as exc:
            for key, value in before.items():
                setattr(self, key, value)
            self.skip(part, str(exc))
        finally:
            self._section = None

    def skip(self, part: str, reason: str) -> None:
        log.warning("evaluate: skipping %s: %s", part, reason)
        self.skipped[part] = reason

    # ------------------------------------------------------------------ recording

    def record(self, name: str, metrics: Mapping[str, Any], caption: str | None = None) -> None:
        self.metrics[name] = dict(metrics)
        if caption is not None:
            rows = [[k, v] for k, v in metrics.items()]
            self.section.tables.append((caption, ["metric", "value"], rows))

    def table(
        self, key: str, caption: str, columns: Sequence[str], rows: Rows, log: bool = True
    ) -> None:
        if log:
            self.tables[key] = (list(columns), rows)
        self.section.tables.append((caption, list(columns), rows))

    def figure(self, key: str, path: Path | None, caption: str) -> None:
        if path is not None:
            self.figures[key] = path
            self.section.figures.append((caption, path))

    def html(self, block: str) -> None:
        self.section.html.append(block)

    def samples(self, key: str, settings: Mapping[str, Any], rows: list[dict[str, str]]) -> None:
        self.tables[key] = (
            ["prompt", "mode", "completion"],
            [[x["prompt"], x["mode"], x["completion"]] for x in rows],
        )
        self.section.samples = {"settings": dict(settings), "samples": rows}

    def embedder(self, name: str, embed: Embedder) -> None:
        self.embedders[name] = embed

    @property
    def section(self) -> Section:
        if self._section is None:
            raise RuntimeError("record inside Evaluation.run(part, title, body)")
        return self._section
