"""Word2Vec's evaluation (``families/word2vec/benchmarks.py``, ``evaluate.py``,
``vectors.py``): the benchmarks through gensim's KeyedVectors report what the definitions say
(Spearman ρ of cosine similarities over the covered pairs, the share of pairs and questions
skipped for an unknown word, 3CosAdd accuracy over the covered questions), averaged word
vectors embed texts cut as the vectors were trained, and the word2vec exports load back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors
from scipy.stats import spearmanr
from tokenizers import Tokenizer

from llmworks.families.word2vec.benchmarks import (
    ANALOGIES,
    SIMLEX,
    WS353,
    benchmark_path,
    keyed_vectors,
    neighbours,
    word_benchmarks,
)
from llmworks.families.word2vec.vectors import average_word_vectors, averaged_vectors


def _pairs(name: str) -> list[tuple[str, str, float]]:
    pairs = []
    for line in benchmark_path(name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            a, b, score = line.split("\t")[:3]
            try:
                pairs.append((a.lower(), b.lower(), float(score)))
            except ValueError:  # a header line
                continue
    return pairs


def _questions() -> list[tuple[str, list[str]]]:
    section, out = "", []
    for line in benchmark_path(ANALOGIES).read_text().splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
        elif line.strip():
            out.append((section, [w.lower() for w in line.split()]))
    return out


@pytest.fixture(scope="module")
def vectors() -> tuple[list[str], np.ndarray]:
    """Random vectors over most benchmark words (every 5th left out, for OOV), with an
    analogy structure planted in two sections so that accuracy is neither 0 nor 1."""
    rng = np.random.default_rng(0)
    seen = dict.fromkeys(w for n in (WS353, SIMLEX) for a, b, _ in _pairs(n) for w in (a, b))
    seen |= dict.fromkeys(w for _, q in _questions() for w in q)
    words = [w for i, w in enumerate(seen) if i % 5 != 0]
    index = {w: i for i, w in enumerate(words)}
    vecs = rng.normal(size=(len(words), 32)).astype(np.float32)
    offsets = {"capital-common-countries": rng.normal(size=32), "family": rng.normal(size=32)}
    for section, (a, b, *_) in _questions():
        if section in offsets and a in index and b in index:
            vecs[index[b]] = vecs[index[a]] + offsets[section] + 0.3 * rng.normal(size=32)
    return words, vecs


@pytest.mark.parametrize(("key", "name"), [("ws353", WS353), ("simlex", SIMLEX)])
def test_pair_scores_follow_the_definition(vectors, key: str, name: str) -> None:
    words, vecs = vectors
    metrics = word_benchmarks(keyed_vectors(words, vecs), min_pairs=30)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    index = {w: i for i, w in enumerate(words)}
    pairs = _pairs(name)
    covered = [(index[a], index[b], s) for a, b, s in pairs if a in index and b in index]
    cosines = [float(unit[i] @ unit[j]) for i, j, _ in covered]
    rho = spearmanr([s for *_, s in covered], cosines).statistic
    assert metrics[f"{key}_rho"] == pytest.approx(rho, abs=1e-5)
    assert metrics[f"{key}_oov"] == pytest.approx(1 - len(covered) / len(pairs))
    assert 0 < metrics[f"{key}_oov"] < 1


def test_analogies_count_only_covered_questions(vectors) -> None:
    words, vecs = vectors
    metrics = word_benchmarks(keyed_vectors(words, vecs), min_pairs=30)
    vocab = set(words)
    questions = _questions()
    covered = [q for _, q in questions if set(q) <= vocab]
    assert metrics["analogy_coverage"] == pytest.approx(len(covered) / len(questions))
    # the planted sections are solvable, the rest is noise: neither 0 nor 1
    assert 0.01 < metrics["analogy_acc"] < 0.99
    planted = [q for s, q in questions if s == "family" and set(q) <= vocab]
    kv = keyed_vectors(words, vecs)
    solved = sum(
        kv.most_similar(positive=[b, c], negative=[a], topn=1)[0][0] == d for a, b, c, d in planted
    )
    assert solved / len(planted) > 0.5


def test_too_few_covered_pairs_give_no_correlation() -> None:
    """Three covered WordSim353 pairs would give a 'perfect' rho: it is not reported."""
    words = ["tiger", "cat", "book", "paper", "computer", "keyboard"]
    vecs = np.random.default_rng(0).normal(size=(len(words), 8))
    metrics = word_benchmarks(keyed_vectors(words, vecs), min_pairs=30)
    assert np.isnan(metrics["ws353_rho"]) and 0.98 < metrics["ws353_oov"] < 1
    nothing = word_benchmarks(keyed_vectors(["zzzz", "qqqq"], vecs[:2]), min_pairs=30)
    assert np.isnan(nothing["simlex_rho"]) and nothing["simlex_oov"] == 1.0
    assert nothing["analogy_coverage"] == 0 and np.isnan(nothing["analogy_acc"])


def test_neighbours_skip_unknown_words(vectors) -> None:
    words, vecs = vectors
    kv = keyed_vectors(words, vecs)
    near = neighbours(kv, [words[1], "not-a-word"], k=3)
    assert list(near) == [words[1]] and len(near[words[1]]) == 3
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = unit @ unit[1]
    sims[1] = -np.inf
    assert [w for w, _ in near[words[1]]] == [words[i] for i in np.argsort(-sims)[:3]]


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip(tmp_path, binary: bool) -> None:
    rng = np.random.default_rng(1)
    words = ["the", "café", "naïve", "x"]
    vecs = rng.normal(size=(4, 7)).astype(np.float32)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    keyed_vectors(words, vecs).save_word2vec_format(str(path), binary=binary)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == words
    np.testing.assert_allclose(kv.vectors, vecs, rtol=1e-5 if not binary else 0, atol=1e-6)


def test_averaged_word_vectors() -> None:
    words = ["cat", "dog", "river"]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]], dtype=np.float32)
    out = averaged_vectors(words, vectors, lowercase=True)(["The CAT and the dog", "nothing"])
    assert out[0].tolist() == [0.5, 0.5] and out[1].tolist() == [0.0, 0.0]


def test_averaged_vectors_of_subword_tokens(bpe_json: Path) -> None:
    """word2vec.tokenizer: the vectors are of tokenizer tokens, so texts are cut the same way."""
    tok = Tokenizer.from_file(str(bpe_json))
    tokens = tok.encode("the river", add_special_tokens=False).tokens
    words = [t.replace(" ", "\u2581") for t in tokens]
    vectors = np.eye(len(words), dtype=np.float32)
    out = averaged_vectors(words, vectors, lowercase=False, tokenizer=tok)(["the river"])
    assert out[0] == pytest.approx(np.full(len(words), 1 / len(words)))
    assert len(words) >= 2 and any(w not in ("the", "river") for w in words)
    plain = averaged_vectors(words, vectors, lowercase=False)(["the river"])
    assert not np.allclose(plain, out)  # cutting into words would miss the tokens


def test_average_word_vectors() -> None:
    words, vecs = ["water", "sea"], np.array([[1.0, 0.0], [0.0, 1.0]])
    out = average_word_vectors(["Water sea sea", "nothing known"], words, vecs)
    np.testing.assert_allclose(out, [[1 / 3, 2 / 3], [0, 0]])
