"""Stage ``report``: ``<paths.report>/index.html`` from what the other stages wrote, with no
model run here (metrics JSON files and ``report/assets/`` from ``evaluate``). The page tells
the pipeline's story in order: corpus, tokenizers, training, each model, the comparison."""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.evaluation.report import Section, render, table_from_dict
from llmworks.evaluation.run import (
    NEIGHBOURS_FILE,
    SAMPLES_FILE,
    SKIPPED_FILE,
    TOKEN_VIEWS_FILE,
    TRAINED_MODELS,
    evaluation_paths,
)
from llmworks.tracking import experiment_group

log = logging.getLogger(__name__)

INDEX_FILE = "index.html"


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _scalars(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not isinstance(v, dict | list)}


def _figure(assets: Path, figures: dict[str, str], key: str, caption: str) -> list:
    name = figures.get(key)
    return [(caption, assets / name)] if name and (assets / name).is_file() else []


def report_sections(cfg: DictConfig) -> list[Section]:
    metrics_path, assets = evaluation_paths(cfg)
    evaluation = _read(metrics_path)
    if evaluation is None:
        raise LlmworksError(f"{metrics_path} does not exist; run the evaluate stage first")
    figures = _read(assets / "figures.json") or {}
    metrics_dir = Path(cfg.paths.metrics)
    sections: list[Section] = []

    corpus = _read(Path(cfg.paths.data) / "corpus" / "corpus_stats.json")
    if corpus:
        source = corpus.get("source", {})
        s = Section("Corpus")
        splits = {k: v for k, v in corpus.items() if k != "source"}
        s.tables.append((f"Source: {source.get('name', '?')}", *table_from_dict(splits)))
        sections.append(s)

    if "tokenizers" in evaluation:
        s = Section("Tokenizers")
        s.tables.append(("On the test split", *table_from_dict(evaluation["tokenizers"])))
        views = _read(assets / TOKEN_VIEWS_FILE)
        if views:
            s.html_blocks.append("<h3>How each tokenizer cuts one sentence</h3>")
            for name, view in views["views"].items():
                s.html_blocks.append(
                    f"<p><b>{html.escape(name)}</b> ({view['tokens']} tokens)<br>{view['html']}</p>"
                )
        sections.append(s)

    training = {m: _read(metrics_dir / f"{m}.json") for m in TRAINED_MODELS}
    training = {m: _scalars(v) for m, v in training.items() if v}
    s = Section("Training")
    if training:
        s.tables.append(("Final training and validation metrics", *table_from_dict(training)))
    s.figures += _figure(assets, figures, "training_curves", "Training and validation loss")
    if s.tables or s.figures:
        sections.append(s)

    if "word2vec" in evaluation:
        s = Section("Word2Vec")
        s.tables.append(
            (
                "Word similarity and analogies",
                *table_from_dict({"word2vec": evaluation["word2vec"]}),
            )
        )
        s.figures += _figure(assets, figures, "word2vec_map", "2-D map of word vectors")
        neighbours = _read(assets / NEIGHBOURS_FILE) or {}
        if neighbours:
            rows = [
                [w, ", ".join(f"{n} ({sim:.2f})" for n, sim in ns)] for w, ns in neighbours.items()
            ]
            s.tables.append(("Nearest neighbours of the probe words", ["word", "neighbours"], rows))
        sections.append(s)

    if "bert" in evaluation:
        s = Section("BERT (masked LM)")
        s.tables.append(("On the test split", *table_from_dict({"bert": evaluation["bert"]})))
        s.figures += _figure(assets, figures, "bert_attention", "BERT attention on one sentence")
        sections.append(s)

    if "gpt" in evaluation:
        s = Section("GPT (causal LM)")
        s.tables.append(("On the test split", *table_from_dict({"gpt": evaluation["gpt"]})))
        samples = _read(assets / SAMPLES_FILE)
        if samples:
            settings = ", ".join(f"{k}={v}" for k, v in samples["settings"].items())
            s.html_blocks.append(f"<h3>Samples</h3><p class='muted'>{html.escape(settings)}</p>")
            for x in samples["samples"]:
                s.html_blocks.append(
                    f"<p><span class='muted'>{html.escape(x['mode'])}</span></p><pre>"
                    f"<b>{html.escape(x['prompt'])}</b>{html.escape(x['completion'])}</pre>"
                )
        s.figures += _figure(assets, figures, "gpt_attention", "GPT attention on one sentence")
        sections.append(s)

    if "representations" in evaluation:
        s = Section("Representations compared")
        scores = evaluation["representations"]
        some = next(iter(scores.values()))
        s.tables.append(
            (
                f"Which of {some['documents']} held-out documents does each of "
                f"{some['queries']} paragraphs come from? (nearest centroid, leave-one-out)",
                *table_from_dict(scores),
            )
        )
        s.figures += _figure(assets, figures, "representations", "Accuracy and MRR")
        sections.append(s)

    skipped = _read(assets / SKIPPED_FILE)
    if skipped:
        s = Section("Not evaluated")
        rows = [[part, reason] for part, reason in skipped.items()]
        s.tables.append(("Parts the evaluate stage skipped, and why", ["part", "reason"], rows))
        sections.append(s)
    return sections


def build_report(cfg: DictConfig) -> Path:
    """The ``report`` stage: write ``index.html`` next to ``assets/``."""
    _, assets = evaluation_paths(cfg)
    sections = report_sections(cfg)
    title = f"llmworks report: {experiment_group(cfg)}"
    subtitle = (
        "Every model of the pipeline measured on the held-out test split. "
        "Reproduce with `dvc repro`; compare runs with `dvc metrics diff` or in W&B."
    )
    index = render(title, subtitle, sections, assets.parent)
    log.info("report: %s", index)
    return index
