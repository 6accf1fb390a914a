"""Word2Vec's vocabulary: the words of the train split (``min_count``, most frequent first)
and the corpus as one id array with document offsets."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmworks.errors import LlmworksError


@dataclass
class WordVocab:
    words: list[str]  # most frequent first
    counts: np.ndarray  # int64, aligned with words

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, docs: Iterable[list[str]], min_count: int) -> WordVocab:
        counter: Counter[str] = Counter()
        for doc in docs:
            counter.update(doc)
        kept = sorted(
            ((w, c) for w, c in counter.items() if c >= min_count), key=lambda x: (-x[1], x[0])
        )
        if not kept:
            raise LlmworksError(
                f"no word occurs min_count={min_count} times: lower word2vec.min_count "
                "or use a larger corpus"
            )
        return cls([w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64))

    def encode(self, docs: Iterable[list[str]]) -> tuple[np.ndarray, np.ndarray, int]:
        """Ids of in-vocabulary words of all documents back to back, the ``n_docs + 1``
        document offsets, and the number of raw words (out-of-vocabulary ones included)."""
        ids: list[int] = []
        offsets = [0]
        raw = 0
        index = self.index
        for doc in docs:
            raw += len(doc)
            ids.extend(i for i in map(index.get, doc) if i is not None)
            offsets.append(len(ids))
        return np.array(ids, dtype=np.int32), np.array(offsets, dtype=np.int64), raw

    def save(self, path: str | Path) -> None:
        Path(path).write_text(
            json.dumps({"words": self.words, "counts": self.counts.tolist()}), encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | Path) -> WordVocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(data["words"], np.array(data["counts"], dtype=np.int64))
