"""Stage 1 — raw text to a clean, split, saved corpus (``data/corpus/dataset``) with stats."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
from omegaconf import DictConfig

from llmworks.corpus.clean import SPLITS, assign_split, document_hash, normalize_text
from llmworks.corpus.config import CorpusConfig, corpus_config
from llmworks.corpus.sources import TEXT_BATCH, load_documents, split_mode
from llmworks.errors import LlmworksError
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import job_type, log_metrics, wandb_run
from llmworks.words import count_words

log = logging.getLogger(__name__)


def load_corpus(paths: Paths) -> datasets.DatasetDict:
    """The prepared corpus, as later stages read it."""
    return datasets.load_from_disk(str(paths.prepared_corpus()))


def corpus_fingerprint(corpus: datasets.DatasetDict) -> str:
    """Identifies the prepared corpus (the datasets fingerprints of its splits)."""
    return "/".join(f"{name}:{split._fingerprint}" for name, split in sorted(corpus.items()))


def corpus_stage(cfg: DictConfig) -> dict[str, Any]:
    """Load, normalize, de-duplicate and split the corpus; save it and its stats.

    Everything is written to a scratch directory first and moved into place at the end, so a
    failure leaves the previous corpus untouched.
    """
    corpus = corpus_config(cfg)
    by_source = split_mode(corpus) == "source"
    fractions = {} if by_source else split_fractions(corpus)
    paths = Paths.from_config(cfg)
    out = paths.corpus
    out.mkdir(parents=True, exist_ok=True)
    with scratch_dir(out, "corpus") as tmp:
        raw = load_documents(corpus, Path(tmp) / "load")
        log.info("loaded %d raw documents from %s", len(raw), corpus.name)
        docs = raw.map(
            _normalize_batch,
            batched=True,
            batch_size=TEXT_BATCH,
            writer_batch_size=TEXT_BATCH,
            desc="normalize",
            fn_kwargs={"fractions": fractions},
        )
        docs = _drop_empty_and_duplicates(docs)
        if corpus.max_documents:
            cleaned = len(docs)
            docs = _first_documents(docs, int(corpus.max_documents), per_split=by_source)
            if len(docs) < cleaned:
                log.info(
                    "corpus.max_documents=%d: kept %d of %d documents (the first after "
                    "cleaning)", int(corpus.max_documents), len(docs), cleaned,
                )  # fmt: skip
        if len(docs) == 0:
            raise LlmworksError(f"corpus {corpus.name!r} has no non-empty documents")
        dataset = datasets.DatasetDict(
            {
                s: docs.filter(
                    lambda b, s=s: [x == s for x in b],
                    batched=True,
                    input_columns="split",
                    desc=f"split {s}",
                ).select_columns(["text"])
                for s in SPLITS
            }
        )
        for name, part in dataset.items():
            if len(part) == 0 and by_source:
                raise LlmworksError(
                    f"the {name} split of corpus {corpus.name!r} has no non-empty documents"
                )
            if len(part) == 0:
                raise LlmworksError(
                    f"the {name} split is empty: {len(docs)} documents are too few for "
                    f"corpus.split={dict(fractions)}; use a larger corpus or larger fractions"
                )
        stats = corpus_stats(dataset)
        stats["source"] = corpus.describe()
        staged = Path(tmp) / "dataset"
        dataset.save_to_disk(str(staged))
        replace_dir(staged, paths.corpus_dataset)
    write_json(paths.corpus_stats, stats)
    with wandb_run(cfg, job_type("corpus")) as run:
        log_metrics(run, _flat(stats), prefix="corpus/")
        log_lineage(run, cfg, {}, {"corpus": ("dataset", paths.corpus_dataset)}, stats["source"])
    log.info("corpus: %s", json.dumps({s: stats[s] for s in SPLITS}))
    return stats


def _first_documents(docs: datasets.Dataset, cap: int, per_split: bool) -> datasets.Dataset:
    """The first ``cap`` documents, or the first ``cap`` of each split the source gave (so a
    capped official split keeps its validation and test text)."""
    if not per_split:
        return docs.select(range(min(cap, len(docs))))
    taken: Counter[str] = Counter()
    keep = []
    for i, split in enumerate(docs["split"]):
        if taken[split] < cap:
            taken[split] += 1
            keep.append(i)
    return docs.select(keep)


def split_fractions(corpus: CorpusConfig) -> dict[str, float]:
    """``corpus.split`` checked before any work: numbers, each held-out split non-empty
    (every later stage validates or tests on it), the two leaving a training split."""
    fractions = {}
    for name in ("validation", "test"):
        value = getattr(corpus.split, name)
        try:
            fractions[name] = float(value)
        except (TypeError, ValueError):
            raise LlmworksError(
                f"corpus.split.{name}={value!r}: expected a fraction such as 0.05"
            ) from None
        if not 0 < fractions[name] < 1:
            raise LlmworksError(
                f"corpus.split.{name}={value}: expected a fraction in (0, 1); the {name} split "
                "must not be empty (every model is validated and tested on held-out text)"
            )
    if sum(fractions.values()) >= 1:
        raise LlmworksError(
            f"corpus.split.validation + corpus.split.test = {sum(fractions.values())}: "
            "must stay below 1 to leave text to train on"
        )
    return fractions


def _normalize_batch(batch: dict[str, list], fractions: dict[str, float]) -> dict[str, list]:
    """Normalized text, its hash and its split: the source's (``split.by=source``, a
    ``split`` column already there) or the hash's."""
    texts = [normalize_text(t or "") for t in batch["text"]]
    digests = [document_hash(t) for t in texts]
    splits = batch.get("split") or [
        assign_split(d, fractions["validation"], fractions["test"]) for d in digests
    ]
    return {"text": texts, "hash": digests, "split": splits}


def _drop_empty_and_duplicates(docs: datasets.Dataset) -> datasets.Dataset:
    """Keep the first occurrence of each distinct non-empty document within its split (with
    hash splitting a document's split follows from its text, so this is corpus-wide; a
    source's own splits are kept as the source made them)."""
    nonempty = docs.filter(
        lambda b: [bool(t) for t in b], batched=True, input_columns="text", desc="drop empty"
    )
    seen: set[tuple[str, str]] = set()
    keys = zip(nonempty["split"], nonempty["hash"], strict=True)
    keep = [i for i, key in enumerate(keys) if not (key in seen or seen.add(key))]
    dropped = len(docs) - len(keep)
    if dropped:
        log.info("dropped %d empty or duplicate documents", dropped)
    return nonempty.select(keep)


def corpus_stats(dataset: datasets.DatasetDict) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for name, part in dataset.items():
        counted = part.map(
            lambda b: {
                "chars": [len(t) for t in b["text"]],
                "bytes": [len(t.encode("utf-8")) for t in b["text"]],
                "words": [count_words(t) for t in b["text"]],
            },
            batched=True,
            batch_size=TEXT_BATCH,
            remove_columns=["text"],
            desc=f"stats {name}",
        )
        stats[name] = {
            "documents": len(part),
            "characters": int(sum(counted["chars"])),
            "bytes": int(sum(counted["bytes"])),
            "words": int(sum(counted["words"])),
        }
    stats["total"] = {k: sum(stats[s][k] for s in dataset) for k in stats[next(iter(dataset))]}
    return stats


def _flat(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        f"{split}/{k}": v
        for split, values in stats.items()
        if isinstance(values, dict) and split != "source"
        for k, v in values.items()
    }
