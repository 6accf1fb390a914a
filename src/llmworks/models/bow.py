"""Bag-of-words and TF-IDF document vectors: the course's first representation, and the
baseline that the evaluation stage compares learned embeddings against.

scikit-learn does the sparse math; the tokenizer is the same regex word tokenizer Word2Vec
trains on (``llmworks.words.tokenize``), so both see the same words.

    bow = BagOfWords(tfidf=True, min_count=2).fit(train_texts)
    X = bow.transform(docs)   # scipy CSR, one L2-normalised row per document
    E = bow.embed(docs)       # dense float32, the ``Embedder`` contract of evaluation
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
from scipy import sparse

from llmworks.errors import LlmworksError
from llmworks.words import tokenize


class BagOfWords:
    def __init__(
        self,
        tfidf: bool = True,
        min_count: int = 1,
        max_features: int | None = None,
        lowercase: bool = True,
        sublinear_tf: bool = True,
    ):
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

        common = dict(
            tokenizer=partial(tokenize, lowercase=lowercase),
            lowercase=False,  # the tokenizer does it (or not)
            token_pattern=None,
            min_df=min_count,
            max_features=max_features,
            dtype=np.float32,
        )
        self.tfidf = tfidf
        self.vectorizer = (
            TfidfVectorizer(sublinear_tf=sublinear_tf, **common)
            if tfidf
            else CountVectorizer(**common)
        )
        self._fitted = False

    def fit(self, texts: Sequence[str]) -> BagOfWords:
        try:
            self.vectorizer.fit(list(texts))
        except ValueError as exc:  # empty vocabulary
            raise LlmworksError(f"bag-of-words: no words to fit on ({exc})") from exc
        self._fitted = True
        return self

    @property
    def vocabulary(self) -> list[str]:
        return list(self.vectorizer.get_feature_names_out())

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Sparse document-term matrix: TF-IDF rows (L2-normalised by scikit-learn), or raw
        counts for the plain bag of words."""
        if not self._fitted:
            raise LlmworksError("bag-of-words: call fit(train_texts) before transform")
        return sparse.csr_matrix(self.vectorizer.transform(list(texts)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Dense, L2-normalised document vectors (fine for the corpus' vocabulary sizes)."""
        x = self.transform(texts).astype(np.float32)
        dense = np.asarray(x.todense())
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return dense / np.maximum(norms, 1e-12)


def fit_bow(
    texts: Sequence[str],
    tfidf: bool = True,
    min_count: int = 1,
    max_features: int | None = None,
) -> BagOfWords:
    return BagOfWords(tfidf=tfidf, min_count=min_count, max_features=max_features).fit(texts)
