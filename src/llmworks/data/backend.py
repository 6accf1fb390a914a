"""The ``data`` section: which store the GPT and BERT stages read their training split from,
and whether a local litdata folder holds whole chunks.

Kept apart from ``streaming`` (which imports litdata, torch and Lightning) because the encode
stage reads it too, and starts without torch, and the training stage checks its chunks before
Lightning loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.domains import positive
from llmworks.errors import LlmworksError

if TYPE_CHECKING:
    from llmworks.data.streaming import Stream

BACKENDS = ("memmap", "litdata")
CHUNKS_DIR = "litdata"  # the encode stage's litdata chunks: data/tokens/<name>/litdata/<split>
TRAIN = "train"  # the one split that streams; validation and test are small and memory-mapped
INDEX_FILE = "index.json"  # litdata's list of the chunks of a dataset folder


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

    def source(self, tokens_dir: Path, tokenizer: str) -> str:
        """Where the training split of ``tokenizer``'s shards streams from: the encode stage's
        chunks beside its shards, or their copy at ``<litdata_dir>/<tokenizer>``."""
        if self.litdata_dir:
            return f"{self.litdata_dir.rstrip('/')}/{tokenizer}/{TRAIN}"
        return str(tokens_dir / CHUNKS_DIR / TRAIN)

    def check_stream(self, tokens_dir: Path, tokenizer: str) -> None:
        """With litdata, a local source holds whole chunks (``check_chunks``); the training
        stage's preflight calls this before Lightning loads."""
        if self.streams:
            check_chunks(self.source(tokens_dir, tokenizer))

    def stream(self, tokens_dir: Path, tokenizer: str) -> Stream | None:
        """Where the training split of ``tokenizer``'s shards streams from (None: memmap),
        checked: a local source without whole chunks fails here, before any training."""
        if not self.streams:
            return None
        from llmworks.data.streaming import Stream

        self.check_stream(tokens_dir, tokenizer)
        return Stream(self.source(tokens_dir, tokenizer), self.cache_dir)


def data_config(cfg: DictConfig) -> DataConfig:
    """The ``data`` section, checked (a bad value fails before any work)."""
    return typed(DataConfig, cfg.data, "data")


def is_remote(source: str) -> bool:
    """An object-store URL (``s3://``, ``gs://``, ``local:/dir``, which litdata reads as a
    remote), not a local folder."""
    return "://" in source or source.startswith("local:")


def check_chunks(source: str) -> None:
    """A local litdata folder holds whole chunks, checked before any training: litdata reads
    a damaged index as a traceback, and waits minutes for a chunk shorter than its index
    says (as for one still downloading). A remote source is litdata's to read."""
    if is_remote(source):
        return
    index = Path(source) / INDEX_FILE
    if not index.is_file():
        raise LlmworksError(
            f"data.backend=litdata: {source} holds no litdata chunks ({INDEX_FILE}); "
            "encode with data.backend=litdata (dvc repro), or point data.litdata_dir at them"
        )
    redo = "encode again with data.backend=litdata (dvc repro -f encode@<name>)"
    try:
        chunks = json.loads(index.read_text())["chunks"]
        sizes = {c["filename"]: int(c["chunk_bytes"]) for c in chunks}
    except (ValueError, KeyError, TypeError) as exc:
        raise LlmworksError(f"{index} is damaged ({exc}); {redo}") from exc
    for name, size in sizes.items():
        chunk = index.parent / name
        if not chunk.is_file() or chunk.stat().st_size != size:
            found = chunk.stat().st_size if chunk.is_file() else "no file"
            raise LlmworksError(f"{chunk}: the index says {size} bytes, found {found}; {redo}")
