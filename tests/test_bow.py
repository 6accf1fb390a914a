"""Bag-of-words / TF-IDF document vectors and averaged word vectors."""

from __future__ import annotations

import numpy as np
import pytest

from llmworks.errors import LlmworksError
from llmworks.models.bow import BagOfWords, fit_bow

TRAIN = [
    "Rivers carry water to the sea.",
    "The sea is salt water; rivers are fresh water.",
    "Chess kings and queens move on the board.",
    "A queen is the strongest chess piece.",
]


def test_tfidf_rows_are_unit_and_rank_related_documents_together() -> None:
    bow = fit_bow(TRAIN, tfidf=True)
    x = bow.transform(TRAIN)
    assert x.shape == (4, len(bow.vocabulary)) and "water" in bow.vocabulary
    np.testing.assert_allclose(np.sqrt(x.multiply(x).sum(1)).A.ravel(), 1.0, rtol=1e-5)
    sims = (x @ x.T).toarray()
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 1]
    e = bow.embed(["water water sea", "unseen words only"])
    assert e.dtype == np.float32 and e.shape == (2, x.shape[1]) and e[1].sum() == 0


def test_plain_counts_and_min_count() -> None:
    bow = BagOfWords(tfidf=False, min_count=2).fit(TRAIN)
    assert "water" in bow.vocabulary and "board" not in bow.vocabulary  # in one document
    counts = bow.transform(["water water the"]).toarray()[0]
    assert counts[bow.vocabulary.index("water")] == 2


def test_errors_name_the_problem() -> None:
    with pytest.raises(LlmworksError, match="fit"):
        BagOfWords().transform(["x"])
    with pytest.raises(LlmworksError, match="no words"):
        BagOfWords().fit(["123 456", "..."])
