"""One label-free task that every representation can take: which document does a paragraph
come from? Bag-of-words, averaged word vectors and pooled Transformer states are all scored
the same way, so the course's arc shows up as one table (``compare_representations``, the
last part of the evaluate stage, scores every embedder the families offered).

Each held-out paragraph is a query; each document is the mean of its other paragraphs'
vectors (the query is left out of its own document). Scores: nearest-centroid accuracy and
mean reciprocal rank of the true document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from llmworks.errors import LlmworksError
from llmworks.evaluation import plots
from llmworks.evaluation.embedders import ArrayLike, Embedder, bag_of_words_embedder
from llmworks.words import count_words

if TYPE_CHECKING:
    from llmworks.evaluation.recorder import Recorder


@dataclass(frozen=True)
class ParagraphTask:
    paragraphs: list[str]
    doc_ids: np.ndarray  # document index of each paragraph

    @property
    def n_docs(self) -> int:
        return int(self.doc_ids.max()) + 1 if len(self.doc_ids) else 0


def paragraph_task(
    documents: Sequence[str],
    min_paragraphs: int,
    min_words: int,
    max_per_doc: int,
    max_docs: int | None,
) -> ParagraphTask:
    """Paragraphs of documents that have at least ``min_paragraphs`` of them (the first
    ``max_docs`` such documents, which keeps the task's cost bounded on a hub corpus)."""
    paragraphs: list[str] = []
    doc_ids: list[int] = []
    doc = 0
    for text in documents:
        if max_docs is not None and doc >= max_docs:
            break
        paras = [p.strip() for p in text.split("\n\n") if count_words(p) >= min_words]
        if len(paras) < min_paragraphs:
            continue
        paras = paras[:max_per_doc]
        paragraphs.extend(paras)
        doc_ids.extend([doc] * len(paras))
        doc += 1
    return ParagraphTask(paragraphs, np.asarray(doc_ids, dtype=np.int64))


def _unit_rows(x: ArrayLike) -> ArrayLike:
    """Rows scaled to unit length; all-zero rows stay zero (they match nothing better than
    anything else, so they score at chance)."""
    if sparse.issparse(x):
        return normalize(sparse.csr_matrix(x, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)


def leave_one_out_scores(
    embeddings: ArrayLike, doc_ids: np.ndarray, chunk: int = 4096
) -> dict[str, float]:
    """Nearest-centroid accuracy and MRR, each paragraph left out of its own centroid.

    Cosine to a centroid equals cosine to the sum of its unit vectors, so one product
    ``E @ sums.T`` gives every query's similarity to every document; its own document's
    sum is corrected by subtracting the query. Ties are broken at random in expectation
    (a tie of ``t`` documents at the top counts ``1/t`` correct), so constant or zero vectors
    score exactly chance instead of winning every tie. ``embeddings`` may be dense or
    scipy-sparse (bag-of-words rows).
    """
    emb = _unit_rows(embeddings)
    doc_ids = np.asarray(doc_ids, dtype=np.int64)
    n, n_docs = len(doc_ids), int(doc_ids.max()) + 1
    member = sparse.csr_matrix(
        (np.ones(n), (doc_ids, np.arange(n))), shape=(n_docs, n)
    )  # doc x paragraph indicator
    sums = np.asarray((member @ emb).todense() if sparse.issparse(emb) else member @ emb)
    sum_sq = (sums * sums).sum(1)
    counts = np.bincount(doc_ids, minlength=n_docs)
    self_sq = (
        np.asarray(emb.multiply(emb).sum(1)).ravel()
        if sparse.issparse(emb)
        else ((emb * emb).sum(1))
    )
    harmonic = _harmonic(n_docs)
    correct, reciprocal = 0.0, 0.0
    for lo in range(0, n, chunk):
        rows = slice(lo, min(lo + chunk, n))
        dots = np.asarray(emb[rows] @ sums.T)  # (queries, docs)
        sims = dots / np.maximum(np.sqrt(sum_sq), 1e-300)
        own = doc_ids[rows]
        q = np.arange(len(own))
        own_dot = dots[q, own] - self_sq[rows]
        own_norm = np.sqrt(np.maximum(sum_sq[own] - 2 * dots[q, own] + self_sq[rows], 0.0))
        own_sim = own_dot / np.maximum(own_norm, 1e-300)
        own_sim[counts[own] <= 1] = -np.inf  # no other paragraph to make a centroid of
        sims[q, own] = own_sim
        sims[:, counts == 0] = -np.inf
        tol = 1e-9 * np.maximum(np.abs(own_sim), 1.0)[:, None]
        above = (sims > own_sim[:, None] + tol).sum(1)
        tied = (np.abs(sims - own_sim[:, None]) <= tol).sum(1)  # includes its own document
        correct += float(np.sum(np.where(above == 0, 1.0 / tied, 0.0)))
        # a tie of t documents after `above` better ones: rank uniform on above+1..above+t
        reciprocal += float(np.sum((harmonic[above + tied] - harmonic[above]) / tied))
    return {"accuracy": correct / n, "mrr": reciprocal / n, "queries": n, "documents": n_docs}


def _harmonic(n: int) -> np.ndarray:
    """``H[k] = 1 + 1/2 + ... + 1/k`` for k = 0..n: the mean of 1/rank over ranks
    ``a+1..a+t`` is ``(H[a+t] - H[a]) / t``."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def compare(task: ParagraphTask, embedders: dict[str, Embedder]) -> dict[str, dict[str, float]]:
    """Score every embedder on the same task; chance accuracy is reported alongside."""
    results = {
        name: leave_one_out_scores(embed(task.paragraphs), task.doc_ids)
        for name, embed in embedders.items()
    }
    results["chance"] = {
        "accuracy": 1.0 / max(task.n_docs, 1),
        "mrr": float(_harmonic(task.n_docs)[-1] / task.n_docs) if task.n_docs else 0.0,
        "queries": len(task.paragraphs),
        "documents": task.n_docs,
    }
    return results


def compare_representations(rec: Recorder, offered: dict[str, Embedder]) -> None:
    """Bag-of-words and TF-IDF (fit on the training split) beside every representation a
    family ``offered``, on paragraphs of the held-out documents."""
    r = rec.cfg.evaluate.representations
    docs = [t for split in r.splits for t in rec.corpus[str(split)]["text"]]
    task = paragraph_task(
        docs, int(r.min_paragraphs), int(r.min_words), int(r.max_per_doc), r.max_docs
    )
    if task.n_docs < 2:
        raise LlmworksError(
            f"{task.n_docs} held-out documents with >= {int(r.min_paragraphs)} paragraphs "
            f"of >= {int(r.min_words)} words; the comparison needs two"
        )
    train = rec.corpus["train"]["text"]
    embedders = {
        "bow_counts": bag_of_words_embedder(train, False, r.bow_max_features),
        "tfidf": bag_of_words_embedder(train, True, r.bow_max_features),
        **offered,
    }
    scores = compare(task, embedders)
    rec.record("representations", scores)
    some = next(iter(scores.values()))
    rec.table(
        "representations",
        f"Which of {some['documents']} held-out documents does each of {some['queries']} "
        "paragraphs come from? (nearest centroid, leave-one-out)",
        ["representation", *(k for k in some)],
        [[n, *v.values()] for n, v in scores.items()],
    )
    path = plots.plot_representations(scores, rec.assets / "representations.png")
    rec.figure("representations", path, "Accuracy and MRR")
