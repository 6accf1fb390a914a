"""The paragraph -> document task scores what it should: perfect vectors win, noise is chance."""

from __future__ import annotations

import numpy as np
import pytest

from llmworks.evaluation.representations import compare, leave_one_out_scores, paragraph_task

from conftest import preset

# the task's settings of conf/evaluate/default.yaml
TASK = {
    k: v
    for k, v in preset("evaluate", "default", "representations").items()
    if k in ("min_paragraphs", "min_words", "max_per_doc")
} | {"max_docs": None}


def _docs() -> list[str]:
    topics = [
        "river water flows to the sea",
        "planets orbit the bright sun",
        "bread flour yeast and ovens",
        "chess kings queens and pawns",
    ]
    return [
        "\n\n".join(f"Paragraph {i} about {t} with several more words here." for i in range(5))
        for t in topics
    ] + ["too short"]


def test_task_keeps_documents_with_enough_paragraphs() -> None:
    task = paragraph_task(_docs(), **TASK)
    assert task.n_docs == 4 and len(task.paragraphs) == 20
    assert np.bincount(task.doc_ids).tolist() == [5, 5, 5, 5]


def test_one_hot_document_vectors_score_perfectly_and_noise_does_not() -> None:
    task = paragraph_task(_docs(), **TASK)
    perfect = np.eye(4)[task.doc_ids] + 0.01 * np.random.default_rng(0).normal(size=(20, 4))
    assert leave_one_out_scores(perfect, task.doc_ids) == {
        "accuracy": 1.0,
        "mrr": 1.0,
        "queries": 20,
        "documents": 4,
    }
    noise = np.random.default_rng(1).normal(size=(20, 64))
    assert leave_one_out_scores(noise, task.doc_ids)["accuracy"] < 0.7


def test_compare_reports_chance() -> None:
    task = paragraph_task(_docs(), **TASK)

    def bag_of_words(texts):
        vocab = sorted({w for t in task.paragraphs for w in t.split()})
        return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)

    results = compare(task, {"bow": bag_of_words})
    assert results["chance"]["accuracy"] == 0.25
    assert results["bow"]["accuracy"] == 1.0


def _reference_scores(embeddings: np.ndarray, doc_ids: np.ndarray) -> tuple[float, float]:
    """The definition, one query at a time (no ties in random data)."""
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    correct, reciprocal = 0, 0.0
    for i, doc in enumerate(doc_ids):
        others = np.arange(len(doc_ids)) != i
        centroids = np.stack(
            [emb[others & (doc_ids == d)].mean(0) for d in range(doc_ids.max() + 1)]
        )
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        sims = centroids @ emb[i]
        rank = 1 + int((sims > sims[doc]).sum())
        correct += rank == 1
        reciprocal += 1 / rank
    return correct / len(doc_ids), reciprocal / len(doc_ids)


def test_vectorised_scores_match_the_definition_dense_and_sparse() -> None:
    from scipy import sparse

    rng = np.random.default_rng(3)
    doc_ids = np.repeat(np.arange(6), [3, 4, 5, 3, 6, 4])
    emb = np.eye(6)[doc_ids] * 0.8 + rng.normal(size=(len(doc_ids), 6)) * 0.5
    got = leave_one_out_scores(emb, doc_ids, chunk=7)
    want = _reference_scores(emb, doc_ids)
    assert 0.2 < want[0] < 1.0  # a case with both hits and misses
    assert (got["accuracy"], got["mrr"]) == pytest.approx(want, abs=1e-12)
    counts = np.clip(np.round(np.abs(emb) * 3), 0, None)  # a bag-of-words-like matrix
    assert leave_one_out_scores(sparse.csr_matrix(counts), doc_ids) == pytest.approx(
        leave_one_out_scores(counts, doc_ids)
    )


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_or_empty_vectors_score_chance_not_perfect(value: float) -> None:
    task = paragraph_task(_docs(), **TASK)
    scores = leave_one_out_scores(np.full((20, 8), value), task.doc_ids)
    chance = compare(task, {})["chance"]
    assert scores["accuracy"] == pytest.approx(chance["accuracy"])
    assert scores["mrr"] == pytest.approx(chance["mrr"])


def test_max_docs_caps_the_task() -> None:
    task = paragraph_task(_docs(), **(TASK | {"max_docs": 2}))
    assert task.n_docs == 2 and len(task.paragraphs) == 10
