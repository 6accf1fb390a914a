"""Word vectors as gensim ``KeyedVectors``, the word2vec C tool's text and binary formats
(which gensim, fastText and most toolkits read), written by gensim, and texts as the mean of
their word vectors (the evaluate stage's comparison and the finetune stage's probe)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from gensim.models import KeyedVectors
from tokenizers import Tokenizer

from llmworks.spec import Built
from llmworks.words import token_as_word, tokenize

if TYPE_CHECKING:
    from llmworks.evaluation.embedders import Embedder


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


def averaged_vectors(
    words: Sequence[str],
    vectors: np.ndarray,
    lowercase: bool,
    tokenizer: Tokenizer | None = None,
) -> Embedder:
    """Texts as the mean of their word vectors. With ``tokenizer`` (Word2Vec trained on a
    subword tokenizer's tokens, ``word2vec.tokenizer``) a text is cut into that tokenizer's
    tokens, spelled as the vectors file spells them (spaces as ``▁``)."""
    split = None
    if tokenizer is not None:

        def split(text: str) -> list[str]:
            enc = tokenizer.encode(text, add_special_tokens=False)
            return [token_as_word(t) for t in enc.tokens]

    def embed(texts: Sequence[str]) -> np.ndarray:
        return average_word_vectors(texts, words, vectors, lowercase=lowercase, split=split)

    return embed


def average_word_vectors(
    texts: Sequence[str],
    words: Sequence[str],
    vectors: np.ndarray,
    lowercase: bool = True,
    split: Callable[[str], list[str]] | None = None,
) -> np.ndarray:
    """Documents as the mean of their in-vocabulary word vectors (zeros when none): how
    Word2Vec becomes document vectors to set beside TF-IDF.

    ``split`` cuts a text into the units the vectors were trained on: by default the word
    tokenizer Word2Vec trains on, a subword tokenizer's tokens for ``word2vec.tokenizer``."""
    index = {w: i for i, w in enumerate(words)}
    vectors = np.asarray(vectors, dtype=np.float32)
    split = split or partial(tokenize, lowercase=lowercase)
    rows = [[i for i in map(index.get, split(t)) if i is not None] for t in texts]
    lengths = np.array([len(r) for r in rows])
    flat = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
    doc = np.repeat(np.arange(len(rows)), lengths)
    out = np.zeros((len(rows), vectors.shape[1]), dtype=np.float32)
    np.add.at(out, doc, vectors[flat])
    return out / np.maximum(lengths, 1)[:, None]
