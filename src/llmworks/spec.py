"""What a model family is (``Family``, the spec its folder fills in) and where to find one
by name: the one place the shared code -- the training recipe, the evaluate stage, the
report -- learns about families. It never names one.

A family is one folder, ``llmworks/families/<name>/``, as in torchtitan: ``model.py`` (the
model, a page), ``data.py`` (its batches), ``module.py`` (the ``LightningModule`` and
``build``), ``hf.py`` (to and from Hugging Face), ``evaluate.py`` (its part of the evaluate
stage, ``evaluate(rec)``), ``spec.py`` (``FAMILY``, its spec), ``settings.py`` (its config
sections typed without Lightning, ``settings(cfg)``, which ``build`` trains from and the
training stage checks before it loads Lightning; optionally ``finetune_settings(cfg)``, its
``finetune.<name>`` section, which the finetune stage checks the same way) and, for a family whose
representation a labelled task can use, ``downstream.py`` (its part of the finetune stage:
features for a linear probe, and a classifier to fine-tune).

Which families the pipeline runs, and in which order (the order of the report's story), is
the ``families`` map of the config: each family's config group (``conf/<name>/``) adds its
entry there, and ``dvc.yaml`` trains every entry with one ``foreach`` stage, ``train@<name>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from llmworks.errors import LlmworksError

if TYPE_CHECKING:
    import lightning as L
    from omegaconf import DictConfig

    from llmworks.paths import Paths


PACKAGE = "llmworks.families"  # family <name> is the package llmworks.families.<name>
HF_DIR = "hf"  # where a Transformer family's Hugging Face export sits in its model directory


class ExportUnsupported(LlmworksError):
    """The trained architecture has no equivalent in the export format; the stage warns and
    goes on without that export (the model itself is saved)."""


def require_exportable(check: Callable[[Any], object], config: Any) -> None:
    """Run an exporter's architecture check on a model config; the ``LlmworksError`` that
    names the missing counterpart becomes ``ExportUnsupported`` (warn, skip the export)."""
    try:
        check(config)
    except LlmworksError as exc:
        raise ExportUnsupported(str(exc)) from exc


@dataclass(frozen=True)
class CardSpec:
    """What a family says about its exported model on its model card
    (``llmworks.training.model_card``)."""

    pipeline_tag: str  # the Hub's task: text-generation, fill-mask, ...
    library: str  # transformers, gensim
    how_to_load: str  # a Python snippet; {path} stands for the model directory


@dataclass(frozen=True)
class Built:
    """What a family's builder hands the training recipe."""

    module: L.LightningModule  # holds the model as ``module.model`` (with ``save(dir)``)
    data: L.LightningDataModule
    data_id: str  # identifies the training data: part of the run's fingerprint
    # files copied next to the weights (name: source), so the model directory is complete
    files: Mapping[str, Path] = field(default_factory=dict)
    # what it trains on, as W&B lineage: {artifact name: (type, path)}
    inputs: Mapping[str, tuple[str, Path]] = field(default_factory=dict)
    # the Hugging Face checkpoint it continues (<family>.init_from), resolved to its files
    base: Path | None = None


@dataclass(frozen=True)
class Family:
    """Everything the shared code needs to know about one model family.

    ``name`` is at once its folder (``llmworks/families/<name>``), its config section
    (``cfg.<name>``) and group (``conf/<name>/``), its training stage (``train@<name>``), its
    model directory (``models/<name>``) and its metrics (``metrics/train/<name>.json``).
    """

    name: str
    title: str  # the report's heading for it
    build: Callable[[DictConfig, Paths], Built]
    monitor: str  # validation metric, lower is better: picks best.ckpt
    metrics: tuple[str, ...]  # final validation metrics kept in metrics/train/<name>.json
    plots: Mapping[str, Mapping[str, str]]  # {"train": {column: logged name}, "val": {...}}
    # what to change when training diverges (the keys of this family's section that matter)
    divergence_hint: str
    # writes the family's exports into ``export_dir(model dir)`` (ExportUnsupported: skipped)
    export: Callable[[Built, Path], None] | None = None
    # the subdirectory of the model directory its Hugging Face export goes to (HF_DIR; None:
    # its exports sit beside the weights); what the model card describes and W&B links
    hf_dir: str | None = None
    # the model card of its export (README.md in the export, else in the model directory)
    card: CardSpec | None = None

    def export_dir(self, model_dir: Path) -> Path:
        """Where ``export`` writes: the Hugging Face subdirectory, else the model directory."""
        return model_dir / self.hf_dir if self.hf_dir is not None else model_dir

    def exported(self, model_dir: Path) -> Path:
        """The directory a user loads: the Hugging Face export when there is one (it may be
        skipped for an architecture without a counterpart), else the model directory."""
        if self.hf_dir is not None and (model_dir / self.hf_dir).is_dir():
            return model_dir / self.hf_dir
        return model_dir


def names(cfg: DictConfig) -> list[str]:
    """The families the pipeline runs, in the report's order: the config's ``families`` map."""
    return [str(name) for name in cfg.families]


def family(name: str, known: list[str] | None = None) -> Family:
    """The spec of family ``name`` (``llmworks.families.<name>.spec.FAMILY``); ``known`` names
    the configured families for the message when ``name`` is none of them."""
    return _import(name, known).FAMILY


def evaluation(name: str) -> ModuleType:
    """Family ``name``'s part of the evaluate stage, the module
    ``llmworks.families.<name>.evaluate`` (``llmworks.evaluation.recorder.FamilyEvaluation``
    says what it holds). Imported only by the evaluate stage, so a training stage never
    depends on evaluation."""
    return importlib.import_module(f"{PACKAGE}.{name}.evaluate")


def settings(name: str, known: list[str] | None = None) -> ModuleType | None:
    """Family ``name``'s typed config sections, the module ``llmworks.families.<name>.settings``
    (``settings(cfg)``), or None for a family without one. It imports torch at most, so the
    training stage reads it before Lightning and a bad value fails in seconds."""
    _check_known(name, known)
    return _optional(f"{PACKAGE}.{name}.settings")


def downstream(name: str) -> ModuleType | None:
    """Family ``name``'s part of the finetune stage, the module
    ``llmworks.families.<name>.downstream`` (``llmworks.finetune.stage`` says what it holds),
    or None for a family that offers nothing to a labelled task."""
    return _optional(f"{PACKAGE}.{name}.downstream")


def _optional(module: str) -> ModuleType | None:
    """The module, or None where it (or its family's folder) does not exist; an import error
    inside it still raises."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name in (module, module.rpartition(".")[0]):
            return None
        raise


def _check_known(name: str, known: list[str] | None) -> None:
    if known is not None and name not in known:
        raise LlmworksError(f"family={name!r}: expected one of {known}")


def _import(name: str, known: list[str] | None) -> Any:
    _check_known(name, known)
    try:
        return importlib.import_module(f"{PACKAGE}.{name}.spec")
    except ModuleNotFoundError as exc:
        if exc.name in (f"{PACKAGE}.{name}", name):
            raise LlmworksError(
                f"family={name!r}: no folder llmworks/families/{name}/ (configured: {known})"
            ) from exc
        if exc.name == f"{PACKAGE}.{name}.spec":
            raise LlmworksError(
                f"family={name!r}: llmworks/families/{name}/ has no spec.py (FAMILY = Family(...))"
            ) from exc
        raise
