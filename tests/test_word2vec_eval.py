"""Word-similarity metrics agree with gensim's on the same vectors; exports round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors

from llmworks.errors import LlmworksError
from llmworks.evaluation.word_similarity import (
    ANALOGIES,
    SIMLEX,
    WS353,
    WordVectors,
    benchmark_path,
    evaluate,
    evaluate_analogies,
    evaluate_pairs,
    read_pairs,
)
from llmworks.export.word2vec_format import load, save_binary, save_text


def _benchmark_words() -> list[str]:
    words: dict[str, None] = {}
    for name in (WS353, SIMLEX):
        for a, b, _ in read_pairs(benchmark_path(name)):
            words.setdefault(a.lower())
            words.setdefault(b.lower())
    for line in benchmark_path(ANALOGIES).read_text().splitlines():
        if not line.startswith(":"):
            for w in line.split():
                words.setdefault(w.lower())
    return list(words)


@pytest.fixture(scope="module")
def vectors() -> tuple[list[str], np.ndarray]:
    """Random vectors over most benchmark words (some left out, for OOV), with an analogy
    structure planted in two sections so that accuracy is neither 0 nor 1."""
    rng = np.random.default_rng(0)
    words = [w for i, w in enumerate(_benchmark_words()) if i % 5 != 0]
    index = {w: i for i, w in enumerate(words)}
    vecs = rng.normal(size=(len(words), 32)).astype(np.float32)
    offsets = {"capital-common-countries": rng.normal(size=32), "family": rng.normal(size=32)}
    section = ""
    for line in benchmark_path(ANALOGIES).read_text().splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif section in offsets:
            a, b = (w.lower() for w in line.split()[:2])
            if a in index and b in index:
                vecs[index[b]] = vecs[index[a]] + offsets[section] + 0.3 * rng.normal(size=32)
    return words, vecs


def _kv(words: list[str], vecs: np.ndarray) -> KeyedVectors:
    kv = KeyedVectors(vecs.shape[1])
    kv.add_vectors(words, vecs)
    return kv


@pytest.mark.parametrize("name", [WS353, SIMLEX])
def test_pair_scores_match_gensim(vectors, name: str) -> None:
    words, vecs = vectors
    ours = evaluate_pairs(WordVectors(words, vecs), benchmark_path(name))
    pearson, spearman, oov = _kv(words, vecs).evaluate_word_pairs(benchmark_path(name))
    assert ours.spearman == pytest.approx(spearman.statistic, abs=1e-6)
    assert ours.pearson == pytest.approx(pearson.statistic, abs=1e-6)
    assert ours.oov_rate == pytest.approx(oov / 100, abs=1e-9)
    assert 0 < ours.oov_rate < 1


def test_analogies_match_gensim(vectors) -> None:
    words, vecs = vectors
    ours = evaluate_analogies(WordVectors(words, vecs), benchmark_path(ANALOGIES))
    acc, sections = _kv(words, vecs).evaluate_word_analogies(benchmark_path(ANALOGIES))
    total = sections[-1]
    assert ours.n_correct == len(total["correct"])
    assert ours.n_covered == len(total["correct"]) + len(total["incorrect"])
    assert ours.accuracy == pytest.approx(acc)
    assert 0.01 < ours.accuracy < 0.99 and 0 < ours.coverage < 1
    family = next(s for s in sections if s["section"] == "family")
    n = len(family["correct"]) + len(family["incorrect"])
    assert ours.sections["family"] == pytest.approx(len(family["correct"]) / n)


def test_evaluate_reports_every_metric_and_neighbours(vectors) -> None:
    words, vecs = vectors
    metrics, neighbours = evaluate(words, vecs, probe_words=[words[1], "not-a-word"], k=3)
    expected = {"ws353_rho", "ws353_oov", "simlex_rho", "simlex_oov"}
    assert expected | {"analogy_acc", "analogy_coverage"} <= set(metrics)
    assert neighbours["not-a-word"] == []
    kv_top = [w for w, _ in _kv(words, vecs).most_similar(words[1], topn=3)]
    assert [w for w, _ in neighbours[words[1]]] == kv_top


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip(tmp_path, binary: bool) -> None:
    rng = np.random.default_rng(1)
    words = ["the", "café", "naïve", "x"]
    vecs = rng.normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    (save_binary if binary else save_text)(path, words, vecs)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == words
    np.testing.assert_allclose(kv.vectors, vecs, rtol=1e-5 if not binary else 0, atol=1e-6)
    back_words, back = load(path)
    assert back_words == words and back.shape == (4, 7)


def test_export_rejects_words_with_spaces(tmp_path) -> None:
    with pytest.raises(LlmworksError, match="whitespace"):
        save_text(tmp_path / "v.txt", ["a b"], np.zeros((1, 3)))
