"""One label-free task that every representation can take: which document does a paragraph
come from? Bag-of-words, averaged Word2Vec and pooled Transformer states are all scored the
same way, so the course's arc shows up as one table.

Each held-out paragraph is a query; each document is the mean of its other paragraphs'
vectors (the query is left out of its own document). Scores: nearest-centroid accuracy and
mean reciprocal rank of the true document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class ParagraphTask:
    paragraphs: list[str]
    doc_ids: np.ndarray  # document index of each paragraph

    @property
    def n_docs(self) -> int:
        return int(self.doc_ids.max()) + 1 if len(self.doc_ids) else 0


def paragraph_task(
    documents: Sequence[str], min_paragraphs: int = 3, min_words: int = 8, max_per_doc: int = 40
) -> ParagraphTask:
    """Paragraphs of documents that have at least ``min_paragraphs`` of them."""
    paragraphs: list[str] = []
    doc_ids: list[int] = []
    doc = 0
    for text in documents:
        paras = [p.strip() for p in text.split("\n\n") if len(p.split()) >= min_words]
        if len(paras) < min_paragraphs:
            continue
        paras = paras[:max_per_doc]
        paragraphs.extend(paras)
        doc_ids.extend([doc] * len(paras))
        doc += 1
    return ParagraphTask(paragraphs, np.asarray(doc_ids, dtype=np.int64))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def leave_one_out_scores(embeddings: np.ndarray, doc_ids: np.ndarray) -> dict[str, float]:
    """Nearest-centroid accuracy and MRR, each paragraph left out of its own centroid."""
    emb = _unit(embeddings)
    n_docs = int(doc_ids.max()) + 1
    sums = np.zeros((n_docs, emb.shape[1]))
    np.add.at(sums, doc_ids, emb)
    counts = np.bincount(doc_ids, minlength=n_docs).astype(np.float64)
    correct, reciprocal = 0, 0.0
    for vec, doc in zip(emb, doc_ids, strict=True):
        centroids = sums.copy()
        centroids[doc] -= vec
        sizes = counts.copy()
        sizes[doc] -= 1
        centroids = _unit(centroids / np.maximum(sizes, 1)[:, None])
        sims = centroids @ vec
        sims[sizes == 0] = -np.inf
        rank = int((sims > sims[doc]).sum()) + 1
        correct += rank == 1
        reciprocal += 1.0 / rank
    n = len(doc_ids)
    return {"accuracy": correct / n, "mrr": reciprocal / n, "queries": n, "documents": n_docs}


def compare(task: ParagraphTask, embedders: dict[str, Embedder]) -> dict[str, dict[str, float]]:
    """Score every embedder on the same task; chance accuracy is reported alongside."""
    results = {
        name: leave_one_out_scores(embed(task.paragraphs), task.doc_ids)
        for name, embed in embedders.items()
    }
    results["chance"] = {
        "accuracy": 1.0 / max(task.n_docs, 1),
        "mrr": float(np.mean([1.0 / r for r in range(1, task.n_docs + 1)])) if task.n_docs else 0.0,
        "queries": len(task.paragraphs),
        "documents": task.n_docs,
    }
    return results
