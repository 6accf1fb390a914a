"""Stage ``evaluate``: every trained artifact measured on the held-out test split, pictured,
and compared on one task -- a list of parts, each recorded through one ``Evaluation``.

The parts, in the report's order: the tokenizers (``tokenizers.py``), the training curves
(``training_curves.py``), each model family's own ``evaluate(rec)`` (``llmworks/families/
<name>/evaluate.py``, in the order of the config's ``families``), the published reference
models (``references.py``, ``evaluate.references``), the comparison of every
representation the families offered (``representations.py``) and the labelled task of the
finetune stage (``downstream.py``: probes and fine-tuned models, read from its metrics). A part that cannot be
evaluated (a model not trained, artifacts that do not fit together) is skipped with a warning
and its reason in ``assets/skipped.json``, which the report lists; so the stage also works on
a run that trained only some of the models.

Writes ``<paths.metrics>/evaluation.json`` (DVC metrics; names are stable across runs:
``tokenizers.<name>.*``, ``<family>.*`` such as ``gpt.test_bpb``,
``representations.<embedder>.{accuracy,mrr}``), ``<paths.report>/assets/`` (PNG figures,
samples, token views and ``report.json``, the page's sections for the ``report`` stage) and
one W&B run (``job_type=evaluate``) with the same metrics, the figures as images and the
tables.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from llmworks.corpus.prepare import load_corpus
from llmworks.errors import LlmworksError
from llmworks.evaluation.downstream import downstream
from llmworks.evaluation.recorder import Evaluation, FamilyEvaluation
from llmworks.evaluation.references import references
from llmworks.evaluation.representations import compare_representations
from llmworks.evaluation.tokenizers import tokenizers
from llmworks.evaluation.trained import is_trained
from llmworks.evaluation.training_curves import training
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.report.html import Section
from llmworks.spec import evaluation, family, names
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import job_type, log_images, log_metrics, log_table, wandb_run

log = logging.getLogger(__name__)


def evaluate_stage(cfg: DictConfig) -> dict[str, Any]:
    """The ``evaluate`` stage. Assets are written to a staging directory and moved into
    place at the end, so a crash of a direct run leaves the previous report assets intact
    (``dvc repro`` removes a stage's outputs before running it; its cache keeps the old
    ones)."""
    configured = names(cfg)
    specs = [family(name, configured) for name in configured]
    parts: dict[str, FamilyEvaluation] = {name: evaluation(name) for name in configured}
    device = check_settings(cfg, parts)
    paths = Paths.from_config(cfg)
    corpus = load_corpus(paths)
    paths.report.mkdir(parents=True, exist_ok=True)
    with scratch_dir(paths.report, "assets") as tmp:
        staged = Path(tmp) / paths.assets.name
        staged.mkdir()
        rec = Evaluation(cfg, paths, device, corpus, staged)
        rec.run("tokenizers", "Tokenizers", tokenizers)
        rec.run("training", "Training", partial(training, families=configured))
        for f in specs:
            rec.run(f.name, f.title, parts[f.name].evaluate)
        rec.run("references", "Published models", partial(references, parts=parts))
        rec.run(
            "representations",
            "Representations compared",
            lambda r: compare_representations(r, dict(rec.embedders)),
        )
        rec.run("downstream", "Downstream", downstream)
        write_json(
            staged / paths.report_sections.name,
            {
                "families": configured,
                "figures": {k: p.name for k, p in rec.figures.items()},
                "sections": [_section_json(s) for s in rec.sections.values()],
            },
        )
        write_json(staged / paths.skipped.name, rec.skipped)
        replace_dir(staged, paths.assets)
    write_json(paths.evaluation, rec.metrics)
    with wandb_run(cfg, job_type("evaluate")) as run:
        log_metrics(run, flatten(rec.metrics))
        trained = sorted((f for f in specs if is_trained(paths, f.name)), key=lambda f: f.name)
        inputs = {"corpus": ("dataset", paths.corpus_dataset)} | {
            f"model-{f.name}": ("model", f.exported(paths.model(f.name))) for f in trained
        }
        log_lineage(run, cfg, inputs, {"evaluation": ("evaluation", paths.assets)})
        log_images(run, {f"figures/{k}": paths.assets / p.name for k, p in rec.figures.items()})
        for key, (columns, rows) in rec.tables.items():
            log_table(run, f"tables/{key}", columns, rows)
    log.info("evaluate: wrote %s and %s", paths.evaluation, paths.assets)
    return rec.metrics


def check_settings(cfg: DictConfig, parts: dict[str, FamilyEvaluation]) -> torch.device:
    """Settings that can be checked before any work (every family's own too); returns the
    device the models run on."""
    limit = cfg.evaluate.max_test_batches
    if limit is not None and int(limit) < 1:
        raise LlmworksError(
            f"evaluate.max_test_batches={limit}: expected a positive count, or null for all"
        )
    for part in parts.values():
        part.settings(cfg)
    return eval_device(str(cfg.evaluate.device))


def eval_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one (the Transformers' test scores, samples and
    embeddings are forward passes only), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise LlmworksError(f"evaluate.device={name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LlmworksError(f"evaluate.device={name!r} but torch sees no CUDA device")
    return device


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"gpt": {"test_loss": 1}}`` -> ``{"gpt/test_loss": 1}``: the W&B metric names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _section_json(section: Section) -> dict[str, Any]:
    """A section with its figures named relative to the assets directory."""
    data = asdict(section)
    data["figures"] = [(caption, Path(p).name) for caption, p in section.figures]
    return data
