"""Encoded token shards: the contract between the encode stage and every training stage.

Layout of ``data/tokens/<tokenizer>/``:

- ``<split>.bin``: all documents of the split, token ids back to back (``uint16`` when the
  vocabulary fits, else ``uint32``), each document followed by the tokenizer's end-of-text
  id, so a causal LM can read contiguous windows straight from a memory map.
- ``<split>.offsets.npy``: ``int64`` array of ``n_docs + 1`` positions; document ``i`` is
  ``tokens[offsets[i]:offsets[i + 1]]`` (its trailing separator included).
- ``meta.json``: tokenizer hash, vocabulary size, dtype, separator id, counts per split.

Readers go through :func:`open_shards`, which refuses shards made by another tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmworks.errors import LlmworksError

SPLITS = ("train", "validation", "test")
META_FILE = "meta.json"


def tokenizer_hash(tokenizer_json: str | Path) -> str:
    """Content hash of a ``tokenizer.json``; shards record it to detect a stale tokenizer."""
    return hashlib.sha256(Path(tokenizer_json).read_bytes()).hexdigest()


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


@dataclass(frozen=True)
class SplitTokens:
    """One split: a read-only memory map of the token stream plus its document offsets."""

    tokens: np.memmap
    offsets: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_docs(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def document(self, i: int, keep_separator: bool = False) -> np.ndarray:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return np.asarray(self.tokens[start : end if keep_separator else end - 1])


@dataclass(frozen=True)
class TextPerToken:
    """Text per token of one split, to restate a loss in nats/token in units that do not
    depend on the tokenizer: UTF-8 bytes (bits per byte) and words (word-level perplexity, as
    WikiText papers report it: whitespace-separated words plus one end-of-document per
    document, the counterpart of their ``<eos>``)."""

    bytes: float
    words: float | None  # None for shards encoded before words were counted


@dataclass(frozen=True)
class TokenShards:
    """All splits of one tokenizer's encoded corpus."""

    root: Path
    meta: dict

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def separator_id(self) -> int:
        return int(self.meta["separator_id"])

    @property
    def fingerprint(self) -> str:
        """Identifies the encoded data (tokenizer hash, counts per split): a training run
        resumes only on the data it started on."""
        return hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode()).hexdigest()

    def text_per_token(self, split: str) -> TextPerToken | None:
        """Bytes and words of ``split``'s text per token (None for a split not encoded)."""
        counts = self.meta["splits"].get(split)
        if counts is None:
            return None
        tokens = max(counts["tokens"], 1)
        words = counts["words"] + counts["docs"] if "words" in counts else None
        return TextPerToken(counts["bytes"] / tokens, words / tokens if words else None)

    def split(self, name: str) -> SplitTokens:
        if name not in self.meta["splits"]:
            raise LlmworksError(
                f"{self.root}: no split {name!r} (have {sorted(self.meta['splits'])})"
            )
        tokens = np.memmap(self.root / f"{name}.bin", dtype=np.dtype(self.meta["dtype"]), mode="r")
        offsets = np.load(self.root / f"{name}.offsets.npy")
        return SplitTokens(tokens=tokens, offsets=offsets)


def open_shards(root: str | Path, tokenizer_json: str | Path | None = None) -> TokenShards:
    """Open encoded shards; with ``tokenizer_json``, refuse shards made by a different tokenizer."""
    root = Path(root)
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise LlmworksError(f"{meta_path} does not exist; {_restore(root)}")
    try:
        meta = json.loads(meta_path.read_text())
        splits = {name: (int(c["tokens"]), int(c["docs"])) for name, c in meta["splits"].items()}
        itemsize = np.dtype(meta["dtype"]).itemsize
    except Exception as exc:
        raise LlmworksError(
            f"{meta_path} is damaged ({type(exc).__name__}: {exc}); {_restore(root)}"
        ) from exc
    for name, (tokens, docs) in splits.items():
        _check_split(root, name, tokens, docs, itemsize)
    if tokenizer_json is not None:
        expected = tokenizer_hash(tokenizer_json)
        if meta.get("tokenizer_sha256") != expected:
            raise LlmworksError(
                f"{root} was encoded with a different tokenizer than {tokenizer_json} "
                f"(sha256 {str(meta.get('tokenizer_sha256'))[:12]}… != {expected[:12]}…); "
                "re-run the encode stage"
            )
    return TokenShards(root=root, meta=meta)


def _restore(root: Path) -> str:
    return f"restore the shards (dvc checkout {root}) or encode them again (dvc repro encode)"


def _check_split(root: Path, name: str, tokens: int, docs: int, itemsize: int) -> None:
    """One split's files against ``meta.json``, before any training or logging starts: a
    shard cut short or grown would otherwise fail deep inside numpy's memmap, or worse,
    train on a misread stream."""
    bin_path, offsets_path = root / f"{name}.bin", root / f"{name}.offsets.npy"
    for path in (bin_path, offsets_path):
        if not path.is_file():
            raise LlmworksError(f"{path} does not exist; {_restore(root)}")
    size, want = bin_path.stat().st_size, tokens * itemsize
    if size != want:
        raise LlmworksError(
            f"{bin_path} has {size:,} bytes, but {root / META_FILE} says {tokens:,} tokens of "
            f"{itemsize} bytes ({want:,}); the file is damaged: {_restore(root)}"
        )
    try:
        offsets = np.load(offsets_path, mmap_mode="r")
        ok = offsets.shape == (docs + 1,) and int(offsets[0]) == 0 and int(offsets[-1]) == tokens
    except Exception:
        ok = False
    if not ok:
        raise LlmworksError(
            f"{offsets_path} does not match {root / META_FILE} ({docs:,} documents, "
            f"{tokens:,} tokens); the file is damaged: {_restore(root)}"
        )
