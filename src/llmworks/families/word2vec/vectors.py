"""Word vectors as gensim ``KeyedVectors``, and the word2vec C tool's text and binary formats
(which gensim, fastText and most toolkits read), written by gensim."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from gensim.models import KeyedVectors

from llmworks.spec import Built


def keyed_vectors(words: Sequence[str], vectors: np.ndarray) -> KeyedVectors:
    """Vectors under their words, most frequent first (the order gensim's ``restrict_vocab``
    and the word2vec formats assume)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    kv = KeyedVectors(vector_size=vectors.shape[1])
    kv.add_vectors(list(words), vectors)
    return kv


def save_word2vec(kv: KeyedVectors, out_dir: Path) -> None:
    """``vectors.txt`` and ``vectors.bin`` in ``out_dir``."""
    kv.save_word2vec_format(str(out_dir / "vectors.txt"), binary=False)
    kv.save_word2vec_format(str(out_dir / "vectors.bin"), binary=True)


def export(built: Built, out_dir: Path) -> None:
    """The stage's export: ``vectors.txt`` / ``vectors.bin`` beside the weights."""
    save_word2vec(
        keyed_vectors(built.data.vocab.words, built.module.model.vectors.numpy()), out_dir
    )
