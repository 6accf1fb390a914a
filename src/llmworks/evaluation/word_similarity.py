"""Word-vector benchmarks: WordSim353 and SimLex-999 (Spearman ρ), the Google analogy set
(3CosAdd accuracy over the covered questions), out-of-vocabulary rates and nearest neighbours.

The benchmark files are the ones the ``gensim`` wheel ships. Lookups are case-insensitive and
pairs or questions with an out-of-vocabulary word are skipped and counted, the conventions of
gensim's ``KeyedVectors.evaluate_word_pairs`` / ``evaluate_word_analogies``, which the tests
check these numbers against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

WS353, SIMLEX, ANALOGIES = "wordsim353.tsv", "simlex999.txt", "questions-words.txt"


def benchmark_path(name: str) -> Path:
    from gensim.test.utils import datapath

    return Path(datapath(name))


class WordVectors:
    """Unit-normalised vectors with a case-insensitive lookup (the first spelling wins)."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray):
        self.words = list(words)
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)
        self.index: dict[str, int] = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w.lower(), i)

    def get(self, word: str) -> int | None:
        return self.index.get(word.lower())

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        i = self.get(word)
        if i is None:
            return []
        sims = self.unit @ self.unit[i]
        sims[i] = -np.inf
        top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
        top = top[np.argsort(-sims[top])]
        return [(self.words[j], float(sims[j])) for j in top]


def read_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """``word1 <tab> word2 <tab> score`` lines; ``#`` comments and a non-numeric header skipped."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        try:
            pairs.append((a, b, float(score)))
        except ValueError:
            continue
    return pairs


@dataclass(frozen=True)
class PairScore:
    spearman: float
    pearson: float
    oov_rate: float  # fraction of pairs skipped for an out-of-vocabulary word
    n_pairs: int


def evaluate_pairs(wv: WordVectors, path: str | Path) -> PairScore:
    """Spearman/Pearson correlation of cosine similarity with the human scores."""
    from scipy.stats import pearsonr

    pairs = read_pairs(path)
    ours, gold = [], []
    for a, b, score in pairs:
        i, j = wv.get(a), wv.get(b)
        if i is None or j is None:
            continue
        ours.append(float(wv.unit[i] @ wv.unit[j]))
        gold.append(score)
    oov = 1.0 - len(ours) / len(pairs) if pairs else 1.0
    if len(ours) < 3:
        return PairScore(float("nan"), float("nan"), oov, len(ours))
    return PairScore(
        float(spearmanr(gold, ours).statistic), float(pearsonr(gold, ours)[0]), oov, len(ours)
    )


@dataclass(frozen=True)
class AnalogyScore:
    accuracy: float  # over covered questions
    coverage: float  # covered / all questions
    n_correct: int
    n_covered: int
    sections: dict[str, float]


def evaluate_analogies(wv: WordVectors, path: str | Path, batch: int = 2048) -> AnalogyScore:
    """3CosAdd: ``argmax_w cos(w, b - a + c)`` over the vocabulary, excluding a, b and c."""
    questions: list[tuple[str, int, int, int, int]] = []
    total = 0
    section = ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        words = line.split()
        if len(words) != 4:
            continue
        total += 1
        ids = [wv.get(w) for w in words]
        if None not in ids:
            questions.append((section, *ids))  # type: ignore[arg-type]
    if not questions:
        return AnalogyScore(float("nan"), 0.0, 0, 0, {})
    q = np.array([x[1:] for x in questions], dtype=np.int64)
    correct = np.zeros(len(q), dtype=bool)
    for s in range(0, len(q), batch):
        a, b, c, d = q[s : s + batch].T
        target = wv.unit[b] - wv.unit[a] + wv.unit[c]
        sims = target @ wv.unit.T
        rows = np.arange(len(a))
        sims[rows, a] = sims[rows, b] = sims[rows, c] = -np.inf
        correct[s : s + batch] = sims.argmax(axis=1) == d
    names = np.array([x[0] for x in questions])
    sections = {n: float(correct[names == n].mean()) for n in dict.fromkeys(names.tolist())}
    return AnalogyScore(float(correct.mean()), len(q) / total, int(correct.sum()), len(q), sections)


def evaluate(
    words: Sequence[str], vectors: np.ndarray, probe_words: Sequence[str] = (), k: int = 8
) -> tuple[dict[str, float], dict[str, list[tuple[str, float]]]]:
    """All benchmarks on one set of vectors: flat metrics and the probe words' neighbours."""
    wv = WordVectors(words, vectors)
    ws = evaluate_pairs(wv, benchmark_path(WS353))
    sl = evaluate_pairs(wv, benchmark_path(SIMLEX))
    an = evaluate_analogies(wv, benchmark_path(ANALOGIES))
    metrics = {
        "ws353_rho": ws.spearman,
        "ws353_oov": ws.oov_rate,
        "simlex_rho": sl.spearman,
        "simlex_oov": sl.oov_rate,
        "analogy_acc": an.accuracy,
        "analogy_coverage": an.coverage,
    }
    return metrics, {w: wv.neighbours(w, k) for w in probe_words}
