"""The labelled task of the finetune stage, prepared once (stage ``prepare_task``) into
``data/task/``: a ``DatasetDict`` with ``train``/``validation``/``test`` splits of ``text``
(and ``text_pair`` for a pair task) with integer ``label`` s, and ``labels.json`` with the
label names, so that every model of the stage reads the same examples and the same label ids.

Three sources (``task.source``; ``conf/task/*.yaml``, each starting from ``embedded.yaml``):

- ``embedded``: which article of the corpus does a paragraph come from? Articles with enough
  paragraphs are the classes; each article's paragraphs are shuffled (seeded) and dealt to
  the three splits, so no paragraph is in two splits while every class is in all three;
- ``local``: your CSV, JSON Lines or parquet files, ``task.data_files={train: ..., ...}``;
- ``hub``: a Hugging Face dataset (``task.path``, ``task.splits``), which needs the network once.

A split that the source lacks is carved from train (seeded). Labels are mapped once, in the
sorted order of the training labels (a ``ClassLabel`` keeps its names). What cannot make a
classification task is refused in one line before anything is written: a missing column, an
empty split, a single class, a label that only an evaluation split has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.corpus.prepare import load_corpus
from llmworks.errors import LlmworksError
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import TASK_SUMMARY, Paths
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import job_type, log_metrics, wandb_run
from llmworks.words import count_words

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SOURCES = ("embedded", "local", "hub")
LOADERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
DATASET_DIR = "dataset"


@dataclass(frozen=True)
class TaskConfig:
    """``cfg.task``: where the examples come from and which columns hold what."""

    name: str
    source: str  # embedded | local | hub
    # embedded: paragraphs of >= min_words words, of articles with >= min_paragraphs of them
    min_words: int
    min_paragraphs: int
    per_class: int  # paragraphs taken from each article
    max_classes: int | None  # the first articles that qualify (None: all)
    # local and hub
    path: str | None  # hub dataset id
    config_name: str | None  # hub dataset configuration
    data_files: dict[str, Any] | None  # local: {train: file(s), validation: ..., test: ...}
    splits: dict[str, str | None] | None  # hub: {train: <split expression>, ...}
    text_field: str
    text_pair_field: str | None  # a second text (paraphrase, NLI): a pair task
    label_field: str
    # every source: the shares carved from train for a split the source lacks (embedded: of
    # each article's paragraphs)
    validation_fraction: float
    test_fraction: float
    max_examples: int | None  # at most this many examples per split (a seeded sample)
    seed: int

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r}: expected one of {list(SOURCES)}")
        for key in ("validation_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 < value < 0.5:
                raise ValueError(f"{key}={value}: expected a share in (0, 0.5)")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples={self.max_examples}: expected >= 1 or null")

    @property
    def pairs(self) -> bool:
        return self.text_pair_field is not None


def task_config(cfg: DictConfig) -> TaskConfig:
    return typed(TaskConfig, cfg.task, "task")


@dataclass(frozen=True)
class Split:
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Task:
    """A prepared task as the finetune stage reads it."""

    name: str
    labels: list[str]  # label id -> name
    splits: dict[str, Split]
    fingerprint: str  # identifies the examples and labels (run fingerprints include it)

    @property
    def pairs(self) -> bool:
        return self.splits["train"].pairs is not None

    @property
    def n_labels(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------- the stage


class NoTask(LlmworksError):
    """The default (embedded) task cannot be made from this corpus: the stages after it
    skip the labelled task with this reason instead of failing the whole ``dvc repro``."""


def prepare_task_stage(cfg: DictConfig) -> dict[str, Any]:
    """Stage ``prepare_task``: the configured task, checked, into ``data/task/`` (written
    aside and moved into place, so a refused task leaves the previous one intact). A corpus
    that cannot make the embedded task (too few long articles: your own short documents,
    say) gets a warning and a ``data/task`` that records why; ``finetune`` and the report
    then skip the task with that reason. A task you chose (local, hub) is refused instead."""
    task = task_config(cfg)
    paths = Paths.from_config(cfg)
    try:
        raw = load_source(task, paths)
    except NoTask as exc:
        log.warning("prepare_task: no task: %s", exc)
        summary = {"task": task.name, "skipped": str(exc)}
        _write(paths, summary, None)
        return summary
    splits, names = label_examples(task, raw)
    summary = {
        "task": task.name,
        "names": names,
        "pairs": task.pairs,
        "examples": {s: len(d) for s, d in splits.items()},
        "per_label": {
            s: {names[i]: n for i, n in sorted(Counter(d["label"]).items())}
            for s, d in splits.items()
        },
    }
    _write(paths, summary, splits)
    with wandb_run(cfg, job_type("prepare_task")) as run:
        log_metrics(run, summary["examples"], prefix="task/")
        log_lineage(run, cfg, {"corpus": ("dataset", paths.corpus_dataset)}
                    if task.source == "embedded" else {}, {"task": ("dataset", paths.task)})  # fmt: skip
    log.info(
        "prepare_task: %s, %d labels, %s examples%s",
        task.name, len(names), summary["examples"], " (text pairs)" if task.pairs else "",
    )  # fmt: skip
    return summary


def _write(paths: Paths, summary: dict[str, Any], splits: dict | None) -> None:
    datasets.disable_progress_bars()  # a few small files: the log line says enough
    with scratch_dir(paths.task.parent, paths.task.name) as tmp:
        staged = tmp / paths.task.name
        staged.mkdir()
        if splits is not None:
            datasets.DatasetDict(splits).save_to_disk(str(staged / DATASET_DIR))
        write_json(staged / TASK_SUMMARY, summary)
        replace_dir(staged, paths.task)


def load_task(paths: Paths) -> Task:
    """The prepared task (``data/task/``), or the one line that says how to make it."""
    root = paths.task
    if not (root / TASK_SUMMARY).is_file():
        raise LlmworksError(f"{root} has no prepared task; run dvc repro prepare_task first")
    summary = json.loads((root / TASK_SUMMARY).read_text())
    if "skipped" in summary:
        raise NoTask(f"no task {summary['task']}: {summary['skipped']}")
    ds = datasets.load_from_disk(str(root / DATASET_DIR))
    splits = {
        name: Split(
            list(ds[name]["text"]),
            list(ds[name]["text_pair"]) if "text_pair" in ds[name].column_names else None,
            [int(x) for x in ds[name]["label"]],
        )
        for name in SPLITS
    }
    digest = hashlib.sha256((root / TASK_SUMMARY).read_bytes())
    for name in SPLITS:
        digest.update(ds[name]._fingerprint.encode())
    return Task(summary["task"], list(summary["names"]), splits, digest.hexdigest())


# ----------------------------------------------------------------------------- sources


def load_source(task: TaskConfig, paths: Paths) -> dict[str, datasets.Dataset]:
    """The task's examples per split, with the configured columns still under their names
    (embedded: ``text``/``label``). Missing validation/test splits are carved from train."""
    if task.source == "embedded":
        return paragraph_splits(task, paths)
    return _carve(task, _local_splits(task) if task.source == "local" else _hub_splits(task))


def paragraph_splits(task: TaskConfig, paths: Paths) -> dict[str, datasets.Dataset]:
    """Paragraph -> article over every split of the prepared corpus: the first
    ``max_classes`` articles with ``min_paragraphs`` paragraphs of ``min_words`` words; from
    each, ``per_class`` paragraphs in a seeded order, dealt test first, then validation, then
    train."""
    corpus = load_corpus(paths)
    rng = random.Random(task.seed)
    rows: dict[str, dict[str, list]] = {s: {"text": [], "label": []} for s in SPLITS}
    n_test = max(1, round(task.per_class * task.test_fraction))
    n_val = max(1, round(task.per_class * task.validation_fraction))
    if task.per_class < n_test + n_val + 1:
        raise LlmworksError(
            f"task.per_class={task.per_class}: too few paragraphs to give every split one"
        )
    classes = 0
    for split in ("train", "validation", "test"):
        for text in corpus[split]["text"]:
            if task.max_classes is not None and classes >= task.max_classes:
                break
            paras = [p.strip() for p in text.split("\n\n") if count_words(p) >= task.min_words]
            if len(paras) < max(task.min_paragraphs, task.per_class):
                continue
            rng.shuffle(paras)
            name = _article_name(text, classes)
            dealt = {"test": paras[:n_test], "validation": paras[n_test : n_test + n_val],
                     "train": paras[n_test + n_val : task.per_class]}  # fmt: skip
            for s, chosen in dealt.items():
                rows[s]["text"] += chosen
                rows[s]["label"] += [name] * len(chosen)
            classes += 1
    if classes < 2:
        raise NoTask(
            f"task {task.name}: {classes} article(s) of the corpus have >= "
            f"{max(task.min_paragraphs, task.per_class)} paragraphs of >= {task.min_words} words; "
            "a classification task needs two (lower task.min_paragraphs / task.per_class, or "
            "use task=local)"
        )
    return {s: datasets.Dataset.from_dict(r) for s, r in rows.items()}


def _article_name(text: str, index: int) -> str:
    """A readable label: the article's first words (Wikipedia articles open with their title)."""
    words = text.split()[:4]
    return f"{index:02d} " + " ".join(words).rstrip(",.;:")


def _local_splits(task: TaskConfig) -> dict[str, datasets.Dataset]:
    files = task.data_files
    if not files or not isinstance(files, dict) or "train" not in files:
        raise LlmworksError(
            "task=local needs task.data_files={train: <file>, validation: <file>, test: <file>} "
            "(CSV, JSON Lines or parquet; validation and test may be left out)"
        )
    unknown = sorted(set(files) - set(SPLITS))
    if unknown:
        raise LlmworksError(f"task.data_files: splits {unknown} are not one of {list(SPLITS)}")
    out = {}
    for split, given in files.items():
        if given is None:
            continue
        names = [given] if isinstance(given, str) else list(given)
        for name in names:
            if not Path(name).is_file():
                raise LlmworksError(f"task.data_files.{split}: no file {name}")
        loaders = {LOADERS.get(Path(n).suffix.lower()) for n in names}
        if None in loaders or len(loaders) != 1:
            raise LlmworksError(
                f"task.data_files.{split}: {names} are not all one of {sorted(LOADERS)}"
            )
        try:
            out[split] = datasets.load_dataset(loaders.pop(), data_files=names, split="train")
        except Exception as exc:
            if "corresponds to no data" in str(exc):  # a header, or nothing at all
                raise LlmworksError(
                    f"task {task.name}: the {split} split holds no examples ({names})"
                ) from exc
            raise LlmworksError(
                f"task.data_files.{split}: cannot read {names}: {_root_cause(exc)}"
            ) from exc
    return out


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost error (``datasets`` wraps a bad byte or a broken
    file in "An error occurred while generating the dataset")."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _hub_splits(task: TaskConfig) -> dict[str, datasets.Dataset]:
    if not task.path or not task.splits or not task.splits.get("train"):
        raise LlmworksError("task.source=hub needs task.path and task.splits.train")
    out = {}
    for split, expression in task.splits.items():
        if split not in SPLITS:
            raise LlmworksError(f"task.splits: {split!r} is not one of {list(SPLITS)}")
        if expression is None:
            continue
        try:
            out[split] = datasets.load_dataset(task.path, task.config_name, split=expression)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LlmworksError(
                f"task {task.path} ({task.config_name}) split {expression!r}: {first} (a hub "
                "task needs the network once; offline it must be in the datasets cache)"
            ) from exc
    return out


def _carve(task: TaskConfig, raw: dict[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    """Validation and test carved from train (seeded) where the source has none."""
    train = raw["train"]
    missing = [s for s in ("validation", "test") if s not in raw]
    if not missing:
        return raw
    order = list(range(len(train)))
    random.Random(task.seed).shuffle(order)
    out, start = dict(raw), 0
    for split in missing:
        fraction = task.validation_fraction if split == "validation" else task.test_fraction
        n = max(1, round(len(train) * fraction)) if len(train) else 0
        out[split] = train.select(order[start : start + n])
        start += n
    out["train"] = train.select(order[start:])
    log.info("task %s: carved %s from train (seed %d)", task.name, missing, task.seed)
    return out


# ----------------------------------------------------------------------------- labels


def label_examples(
    task: TaskConfig, raw: dict[str, datasets.Dataset]
) -> tuple[dict[str, datasets.Dataset], list[str]]:
    """Each split as ``text`` (+ ``text_pair``) and integer ``label`` columns, labels mapped
    in the sorted order of the training labels; refuses what cannot make the task."""
    fields = [("task.text_field", task.text_field), ("task.label_field", task.label_field)]
    if task.text_pair_field is not None:
        fields.append(("task.text_pair_field", task.text_pair_field))
    for split in SPLITS:
        ds = raw[split]
        for key, column in fields:
            if column not in ds.column_names:
                raise LlmworksError(
                    f"{key}={column!r} is not a column of the {split} split "
                    f"(columns: {ds.column_names})"
                )
        if len(ds) == 0:
            raise LlmworksError(f"task {task.name}: the {split} split holds no examples")
    feature = raw["train"].features[task.label_field]
    label_names = feature.names if isinstance(feature, datasets.ClassLabel) else None

    def name_of(value: Any) -> str:
        return label_names[value] if label_names and 0 <= value < len(label_names) else str(value)

    seen = {s: Counter(raw[s][task.label_field]) for s in SPLITS}
    for split in SPLITS:
        if None in seen[split]:
            raise LlmworksError(
                f"task {task.name}: {seen[split][None]} {split} examples have no label in "
                f"column {task.label_field!r}"
            )
    train_values = sorted(seen["train"])  # one arrow column: all numbers or all strings
    if len(train_values) < 2:
        only = name_of(train_values[0]) if train_values else "none"
        raise LlmworksError(
            f"task {task.name}: the train split has a single label ({only!r}); a classifier "
            "needs at least two"
        )
    for split in ("validation", "test"):
        unseen = [v for v in seen[split] if v not in seen["train"]]
        if unseen:
            v = unseen[0]
            raise LlmworksError(
                f"task {task.name}: label {name_of(v)!r} appears in the {split} split "
                f"({seen[split][v]} examples) but never in train, so no model can learn it; "
                "hidden test labels (GLUE's -1) mean: use the validation split as test"
            )
    ids = {v: i for i, v in enumerate(train_values)}
    names = [name_of(v) for v in train_values]
    out = {}
    for split in SPLITS:
        ds = _cap(raw[split], task.max_examples, task.seed)
        cols = {"text": _texts(ds[task.text_field], task.text_field, split)}
        if task.text_pair_field is not None:
            cols["text_pair"] = _texts(ds[task.text_pair_field], task.text_pair_field, split)
        cols["label"] = [ids[v] for v in ds[task.label_field]]
        out[split] = datasets.Dataset.from_dict(cols)
    return out, names


def _cap(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    if n is None or len(ds) <= n:
        return ds
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    return ds.select(sorted(order[:n]))


def _texts(values: Sequence[Any], column: str, split: str) -> list[str]:
    bad = sum(1 for v in values if not isinstance(v, str) or not v.strip())
    if bad:
        raise LlmworksError(
            f"task: {bad} of {len(values)} {split} examples have no text in column {column!r}"
        )
    return list(values)


def describe(task: Task) -> dict[str, Any]:
    """What identifies the task, for metrics, model cards and logs."""
    return {
        "task": task.name,
        "labels": task.n_labels,
        "pairs": task.pairs,
        **{f"{s}_examples": len(task.splits[s]) for s in SPLITS},
    }
