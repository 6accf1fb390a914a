"""The word2vec C tool's formats, which gensim, fastText and most toolkits read.

Text: a ``<n_words> <dim>`` header line, then ``word v1 v2 ...`` per line. Binary: the same
header, then per word ``word<space>`` followed by ``dim`` little-endian float32 and a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmworks.errors import LlmworksError


def _check(words: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype="<f4")
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise LlmworksError(f"{len(words)} words but vectors of shape {vectors.shape}")
    bad = [w for w in words if not w or any(ch.isspace() for ch in w)]
    if bad:
        raise LlmworksError(f"word2vec format cannot hold words with whitespace: {bad[:5]}")
    return vectors


def save_text(path: str | Path, words: Sequence[str], vectors: np.ndarray) -> Path:
    vectors = _check(words, vectors)
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n")
        for word, row in zip(words, vectors, strict=True):
            f.write(word + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
    return path


def save_binary(path: str | Path, words: Sequence[str], vectors: np.ndarray) -> Path:
    vectors = _check(words, vectors)
    path = Path(path)
    with path.open("wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for word, row in zip(words, vectors, strict=True):
            f.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
    return path


def load(path: str | Path, binary: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Read either format back (binary when the name ends in ``.bin`` unless told)."""
    from gensim.models import KeyedVectors

    binary = str(path).endswith(".bin") if binary is None else binary
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    return list(kv.index_to_key), np.asarray(kv.vectors)
