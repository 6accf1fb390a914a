"""The paragraph -> document task scores what it should: perfect vectors win, noise is chance."""

from __future__ import annotations

import numpy as np

from llmworks.evaluation.representations import compare, leave_one_out_scores, paragraph_task


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
    task = paragraph_task(_docs())
    assert task.n_docs == 4 and len(task.paragraphs) == 20
    assert np.bincount(task.doc_ids).tolist() == [5, 5, 5, 5]


def test_one_hot_document_vectors_score_perfectly_and_noise_does_not() -> None:
    task = paragraph_task(_docs())
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
    task = paragraph_task(_docs())

    def bag_of_words(texts):
        vocab = sorted({w for t in task.paragraphs for w in t.split()})
        return np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float)

    results = compare(task, {"bow": bag_of_words})
    assert results["chance"]["accuracy"] == 0.25
    assert results["bow"]["accuracy"] == 1.0
