"""The ``data`` section: which store the GPT and BERT stages read their training split from.

Kept apart from ``streaming`` (which imports litdata and torch) because the encode stage
reads it too, and starts without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.domains import positive

if TYPE_CHECKING:
    from llmworks.data.streaming import Stream

BACKENDS = ("memmap", "litdata")
CHUNKS_DIR = "litdata"  # the encode stage's litdata chunks: data/tokens/<name>/litdata/<split>
TRAIN = "train"  # the one split that streams; validation and test are small and memory-mapped


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` section (conf/config.yaml)."""

    backend: str  # memmap | litdata
    litdata_dir: str | None  # folder or URL holding <tokenizer>/train/ (None: the encode stage's)
    cache_dir: str | None  # where remote chunks are cached
    chunk_tokens: int  # tokens per chunk the encode stage writes

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: expected one of {list(BACKENDS)}")
        if isinstance(self.chunk_tokens, bool) or not isinstance(self.chunk_tokens, int):
            raise ValueError(f"chunk_tokens={self.chunk_tokens!r}: expected a whole number")
        positive(chunk_tokens=self.chunk_tokens)

    @property
    def streams(self) -> bool:
        return self.backend == "litdata"

    def stream(self, tokens_dir: Path, tokenizer: str) -> Stream | None:
        """Where the training split of ``tokenizer``'s shards streams from (None: memmap),
        checked: a local source without whole chunks fails here, before any training."""
        if not self.streams:
            return None
        from llmworks.data.streaming import Stream

        if self.litdata_dir:  # a copy of data/tokens/<name>/litdata at <litdata_dir>/<name>
            source = f"{self.litdata_dir.rstrip('/')}/{tokenizer}/{TRAIN}"
        else:
            source = str(tokens_dir / CHUNKS_DIR / TRAIN)
        stream = Stream(source, self.cache_dir)
        stream.check()
        return stream


def data_config(cfg: DictConfig) -> DataConfig:
    """The ``data`` section, checked (a bad value fails before any work)."""
    return typed(DataConfig, cfg.data, "data")
