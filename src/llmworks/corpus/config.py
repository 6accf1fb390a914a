"""The ``corpus`` section as one typed object, made once at the stage's edge, so the code
that loads text reads fields, not keys (``conf/corpus/*.yaml``; every corpus starts from
``wiki_sample.yaml``, so every one has every field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed


@dataclass(frozen=True)
class SplitConfig:
    """``corpus.split``: how documents are assigned to train/validation/test."""

    by: str  # hash (by a hash of the text, the fractions below) | source (the corpus's own)
    validation: Any  # a fraction in (0, 1) (checked with the stage's other settings)
    test: Any


@dataclass(frozen=True)
class CorpusConfig:
    name: str
    source: str  # embedded | local | hub
    path: str | None  # the hub dataset id
    config_name: str | None  # the hub dataset's configuration
    data_files: Any  # local: a file, directory or glob, a list of them, or {split: ...}
    format: str  # auto | text | json | parquet
    text_field: str  # the column holding the text
    sample_by: str  # text files: paragraph | line | document
    encoding: str
    encoding_errors: str  # strict | replace | ...
    source_splits: list[str] | None  # the hub splits to read (None: all)
    streaming: bool  # stream the source (hub or local files), keeping the first max_documents
    grouping: str | None  # wikitext_articles: WikiText's lines regrouped into articles
    max_documents: int | None  # keep the first N documents after cleaning (None: all)
    split: SplitConfig

    def describe(self) -> dict[str, Any]:
        """What identifies the source, for the stats, the model cards and the logs."""
        return {
            "name": self.name,
            "source": self.source,
            "path": self.path,
            "config_name": self.config_name,
            "data_files": self.data_files,
            "max_documents": self.max_documents,
            "split_by": self.split.by,
        }


def corpus_config(cfg: DictConfig) -> CorpusConfig:
    """``cfg.corpus`` typed (an unknown or missing key is refused in one line)."""
    values = OmegaConf.to_container(cfg.corpus, resolve=True)
    split = typed(SplitConfig, values.pop("split", {}), "corpus.split")
    return typed(CorpusConfig, values, "corpus", split=split)
