"""Word-vector benchmarks through gensim's ``KeyedVectors``: WordSim353 and SimLex-999
(Spearman ρ of cosine similarity against human scores), the Google analogy set (3CosAdd
accuracy over the covered questions), out-of-vocabulary rates and nearest neighbours.

The benchmark files are the ones the ``gensim`` wheel ships. Lookups are case-insensitive and
pairs or questions with an out-of-vocabulary word are skipped and counted (gensim's
``evaluate_word_pairs`` / ``evaluate_word_analogies`` conventions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from gensim.models import KeyedVectors

from llmworks.families.word2vec.vectors import keyed_vectors

__all__ = ["keyed_vectors", "word_benchmarks", "neighbours"]

WS353, SIMLEX, ANALOGIES = "wordsim353.tsv", "simlex999.txt", "questions-words.txt"


def benchmark_path(name: str) -> Path:
    from gensim.test.utils import datapath

    return Path(datapath(name))


def _pairs(path: Path) -> list[str]:
    """The pair lines of a similarity file (gensim's reader skips comments and headers)."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [line for line in lines if line.split("\t")[-1].replace(".", "", 1).isdigit()]


def _questions(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line and not line.startswith(":"))


def word_benchmarks(kv: KeyedVectors, min_pairs: int) -> dict[str, float]:
    """``ws353_rho``, ``simlex_rho`` (NaN -- null in JSON -- when fewer than ``min_pairs``
    pairs are covered: a correlation over a handful of pairs says nothing), their OOV rates,
    and the analogy accuracy over covered questions with the share of questions covered."""
    quiet = logging.getLogger("gensim")
    level, quiet.level = quiet.level, logging.WARNING  # its INFO lines drown ours
    try:
        metrics = {}
        for key, name in (("ws353", WS353), ("simlex", SIMLEX)):
            n_pairs = len(_pairs(benchmark_path(name)))
            try:
                _, spearman, oov_percent = kv.evaluate_word_pairs(benchmark_path(name))
                rho, oov = float(spearman.statistic), float(oov_percent) / 100
            except ValueError:  # gensim: not one pair covered
                rho, oov = float("nan"), 1.0
            if round((1 - oov) * n_pairs) < min_pairs:
                rho = float("nan")
            metrics[f"{key}_rho"] = rho
            metrics[f"{key}_oov"] = oov
        accuracy, sections = kv.evaluate_word_analogies(benchmark_path(ANALOGIES))
        total = sections[-1]  # gensim's "Total accuracy" section
        covered = len(total["correct"]) + len(total["incorrect"])
        metrics["analogy_acc"] = float(accuracy) if covered else float("nan")
        metrics["analogy_coverage"] = covered / _questions(benchmark_path(ANALOGIES))
    finally:
        quiet.level = level
    return metrics


def neighbours(
    kv: KeyedVectors, words: Sequence[str], k: int
) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` nearest words (cosine) of each of ``words`` that has a vector."""
    return {
        w: [(n, float(s)) for n, s in kv.most_similar(w, topn=k)]
        for w in words
        if w in kv.key_to_index
    }
