"""Where every stage reads and writes: one place, so stages never import each other for paths.

The roots come from ``paths`` in ``conf/config.yaml`` (relative to the working directory);
``dvc.yaml`` builds its paths from the same keys (``${paths.data}/...``).

- ``data/``: ``corpus/dataset`` (+ ``corpus_stats.json``), ``tokenizers/<name>/tokenizer.json``
  (+ ``tokenizer_stats.json``), ``tokens/<name>/`` (token shards);
- ``models/<family>/``: a trained model's artifacts, each directory self-contained
  (``model.safetensors`` + ``config.json``, its ``tokenizer.json``, exports);
- ``data/task/``: the labelled task the finetune stage trains on (``dataset`` with
  ``text``, ``label`` and maybe ``text_pair``; ``labels.json``, the label names);
- ``models/finetuned/<family>/``: a fine-tuned classifier (its weights, tokenizer, labels and
  Hugging Face export);
- ``runs/<family>/``: the state of a training run that a rerun after a crash resumes from
  (``checkpoints/``, Lightning's CSV log, the W&B run id). Not a DVC output: DVC must not
  delete it before a rerun, and optimizer state does not belong in the DVC cache. A queued
  or ``--temp`` experiment keeps it in the main workspace, ``runs/exps/<key>/<family>/``
  (``run_state_root``);
  ``runs/finetune/<model>/`` likewise for each model of the finetune stage;
- ``metrics/``: ``train/<family>.json`` and ``train/<family>_{train,val}.csv`` of every
  training stage, ``finetune.json`` (+ ``finetune_predictions.json``) of the finetune stage,
  ``evaluation.json`` of the evaluate stage;
- ``report/``: ``assets/`` (figures, samples, sections) and ``index.html``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmworks.errors import LlmworksError

TOKENIZER_FILE = "tokenizer.json"
TASK_SUMMARY = "labels.json"  # data/task/labels.json: the prepared task's summary


def run_state_root(cfg: DictConfig, runs: Path) -> Path:
    """Where training state (checkpoints, logs) lives: ``paths.runs``, except in a temporary
    workspace of ``dvc exp run --queue`` or ``--temp``. DVC deletes that workspace when the
    experiment ends, failed or not, and a checkpoint inside it would die with it; there the
    state goes to the main workspace, which DVC names in ``DVC_ROOT``, as
    ``runs/exps/<key>/``. The key is a hash of the experiment's whole config (paths and
    logger aside): the same experiment queued again finds its checkpoint and resumes, while
    experiments that run side by side (``dvc queue start -j 2``) never share a directory."""
    root = os.environ.get("DVC_ROOT")
    if not root or runs.is_absolute() or Path(root).resolve() == Path.cwd().resolve():
        return runs
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings = {k: v for k, v in settings.items() if k not in ("paths", "logger")}
    text = json.dumps(settings, sort_keys=True, default=str)
    return Path(root) / runs / "exps" / hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Paths:
    data: Path
    models: Path
    runs: Path
    metrics: Path
    report: Path

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Paths:
        p = cfg.paths
        data, models, runs, metrics, report = (
            Path(str(p[k])) for k in ("data", "models", "runs", "metrics", "report")
        )
        return cls(data, models, run_state_root(cfg, runs), metrics, report)

    # ------------------------------------------------------------------ data

    @property
    def corpus(self) -> Path:
        return self.data / "corpus"

    @property
    def corpus_dataset(self) -> Path:
        return self.corpus / "dataset"

    def prepared_corpus(self) -> Path:
        """The corpus stage's dataset directory, or the one message that says how to get it."""
        path = self.corpus_dataset
        if not path.is_dir():
            raise LlmworksError(
                f"{path} does not exist; run the corpus stage first (dvc repro corpus)"
            )
        return path

    @property
    def corpus_stats(self) -> Path:
        return self.corpus / "corpus_stats.json"

    def tokenizer_dir(self, name: str) -> Path:
        return self.data / "tokenizers" / name

    def tokenizer(self, name: str) -> Path:
        return self.tokenizer_dir(name) / TOKENIZER_FILE

    def trained_tokenizer(self, name: str) -> Path:
        """A trained tokenizer's ``tokenizer.json``, or the one message that says how to get it."""
        path = self.tokenizer(name)
        if not path.is_file():
            raise LlmworksError(
                f"{path} not found; train it first (dvc repro train_tokenizer@{name})"
            )
        return path

    def tokenizer_stats(self, name: str) -> Path:
        return self.tokenizer_dir(name) / "tokenizer_stats.json"

    def tokens(self, name: str) -> Path:
        return self.data / "tokens" / name

    @property
    def task(self) -> Path:
        """The labelled task of the finetune stage (``prepare_task``)."""
        return self.data / "task"

    @property
    def task_summary(self) -> Path:
        """The prepared task's name, label names, whether it has text pairs and its counts
        (or why it was skipped): read by the finetune stage before Lightning loads."""
        return self.task / TASK_SUMMARY

    # ------------------------------------------------------------------ models and runs

    def model(self, family: str) -> Path:
        return self.models / family

    def run(self, family: str) -> Path:
        return self.runs / family

    @property
    def finetuned(self) -> Path:
        """Every fine-tuned classifier, ``finetuned/<family>/``."""
        return self.models / "finetuned"

    def finetune_run(self, model: str) -> Path:
        return self.runs / "finetune" / model

    # ------------------------------------------------------------------ metrics and report

    @property
    def train_metrics_dir(self) -> Path:
        """Every training stage's final metrics and curves (the evaluate stage reads them all)."""
        return self.metrics / "train"

    def train_metrics(self, family: str) -> Path:
        return self.train_metrics_dir / f"{family}.json"

    def plot_csv(self, family: str, series: str) -> Path:
        return self.train_metrics_dir / f"{family}_{series}.csv"

    @property
    def finetune_metrics(self) -> Path:
        return self.metrics / "finetune.json"

    @property
    def finetune_predictions(self) -> Path:
        """Every model's test-split predictions (the report's confusion matrix)."""
        return self.metrics / "finetune_predictions.json"

    @property
    def evaluation(self) -> Path:
        return self.metrics / "evaluation.json"

    @property
    def assets(self) -> Path:
        return self.report / "assets"

    @property
    def report_sections(self) -> Path:
        """What the evaluate stage recorded for the page: families, figures, sections."""
        return self.assets / "report.json"

    @property
    def skipped(self) -> Path:
        """The parts the evaluate stage could not evaluate, and why."""
        return self.assets / "skipped.json"

    @property
    def report_index(self) -> Path:
        return self.report / "index.html"
