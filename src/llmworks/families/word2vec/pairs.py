"""Training examples for Word2Vec, generated with array operations (no loop per word).

Per epoch: drop frequent words with gensim's subsampling probability, draw one reduced
window per position (gensim's shrinking window), and turn a chunk of the corpus into
(input, output) index pairs -- skip-gram -- or into windows of context ids -- CBOW. Negatives
are drawn from the unigram distribution raised to 0.75.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """gensim's (and word2vec.c's) subsampling: keep a word of frequency f with probability
    ``(sqrt(f / t) + 1) * t / f`` where ``t = sample``, capped at 1."""
    if sample <= 0:
        return np.ones(len(counts))
    total = counts.sum()
    threshold = sample * total
    p = (np.sqrt(counts / threshold) + 1) * threshold / counts
    return np.minimum(p, 1.0)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> torch.Tensor:
    p = torch.as_tensor(counts, dtype=torch.float64) ** power
    return (p / p.sum()).float()


class NegativeSampler:
    """Draws from unigram^0.75 through a precomputed table, as word2vec.c does: one
    ``randint`` + gather is several times cheaper than ``torch.multinomial``."""

    def __init__(self, counts: np.ndarray, power: float = 0.75, table_size: int = 10_000_000):
        p = noise_distribution(counts, power).double()
        cum = torch.cumsum(p, 0)
        # position k of the table holds the word whose cumulative mass covers (k + 0.5) / size
        points = (torch.arange(table_size, dtype=torch.float64) + 0.5) / table_size
        self.table = torch.searchsorted(cum, points).clamp_(max=len(counts) - 1)
        self.table = self.table.to(torch.int64)

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.table[torch.randint(len(self.table), (n,), generator=generator)]


@dataclass
class Corpus:
    """The training corpus as word ids back to back with document offsets."""

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, n_docs + 1
    raw_words: int  # words before the vocabulary cut, the unit of words/s

    @property
    def doc_of(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def subsample(
    corpus: Corpus, keep: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and document numbers of the words kept this epoch."""
    mask = rng.random(len(corpus.ids)) < keep[corpus.ids]
    return corpus.ids[mask], corpus.doc_of[mask]


def skipgram_positions(
    docs: np.ndarray, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(center, context) positions within each center's reduced window, inside a document.

    Each position draws ``b`` in [1, window] and pairs with every word at distance <= b, as
    gensim does. A loop over the ``2 * window`` offsets, not over words; the pairs come out
    sorted by center so that the lr schedule follows corpus order."""
    n = len(docs)
    reach = rng.integers(1, window + 1, size=n)
    centers, contexts = [], []
    for d in range(1, min(window, n - 1) + 1):
        left = np.arange(n - d)
        same_doc = docs[: n - d] == docs[d:]
        fwd = left[same_doc & (reach[: n - d] >= d)]  # center left, context left + d
        bwd = left[same_doc & (reach[d:] >= d)]  # center left + d, context left
        centers += [fwd, bwd + d]
        contexts += [fwd + d, bwd]
    if not centers:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    center, context = np.concatenate(centers), np.concatenate(contexts)
    order = np.argsort(center, kind="stable")
    return center[order], context[order]


def cbow_windows(
    ids: np.ndarray, docs: np.ndarray, window: int, rng: np.random.Generator, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions that have context, and their ``(2 * window)`` rows of context ids (``pad``
    outside the reduced window or the document)."""
    n = len(ids)
    reach = rng.integers(1, window + 1, size=n)
    pos = np.arange(n)
    ctx = np.full((n, 2 * window), pad, dtype=np.int64)
    for j, d in enumerate([*range(-window, 0), *range(1, window + 1)]):
        other = pos + d
        ok = (other >= 0) & (other < n) & (abs(d) <= reach)
        ok[ok] &= docs[other[ok]] == docs[pos[ok]]
        ctx[ok, j] = ids[other[ok]]
    has = (ctx != pad).any(axis=1)
    return pos[has], ctx[has]


def examples(
    ids: np.ndarray, docs: np.ndarray, window: int, sg: bool, rng: np.random.Generator, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(inputs, outputs, center)``: skip-gram -- context / center ids (gensim's orientation);
    CBOW -- rows of context ids / center ids; ``center`` is each example's corpus position."""
    if sg:
        center, context = skipgram_positions(docs, window, rng)
        return ids[context], ids[center], center
    center, inputs = cbow_windows(ids, docs, window, rng, pad)
    return inputs, ids[center], center


class PairStream(torch.utils.data.IterableDataset):
    """Training batches, one pass over the corpus per ``iter()``.

    Per epoch the corpus is subsampled and all its examples generated at once (a few array
    operations), then cut into batches of ``batch_words`` kept words. Each batch is a dict:
    ``inputs`` / ``outputs`` (see ``examples``), ``steps``: offsets cutting the batch into SGD
    steps of ``step_words`` kept words, and ``raw_words``, the corpus words it stands for
    before subsampling (for words/s and the lr schedule). Under DDP rank r takes every
    world-th batch, all ranks the same number. ``epoch`` and ``skip`` place the next ``iter()``: a run resumed in the
    middle of an epoch regenerates that epoch (seeded by ``seed`` and the epoch) and skips
    the batches it already trained on.
    """

    def __init__(
        self,
        corpus: Corpus,
        keep: np.ndarray,
        window: int,
        sg: bool,
        batch_words: int,
        step_words: int,
        seed: int,
        pad: int,
        rank: int = 0,
        world: int = 1,
    ):
        self.corpus, self.keep, self.window, self.sg = corpus, keep, window, sg
        self.batch_words, self.step_words = batch_words, step_words
        self.seed, self.pad, self.rank, self.world = seed, pad, rank, world
        self.epoch, self.skip = 0, 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor | int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        skip, self.skip = self.skip, 0
        self.epoch += 1
        ids, docs = subsample(self.corpus, self.keep, rng)
        raw_per_kept = self.corpus.raw_words / max(len(ids), 1)
        inputs, outputs, center = examples(ids, docs, self.window, self.sg, rng, self.pad)
        # example index where each step (step_words kept words) starts
        cuts = np.searchsorted(center, np.arange(0, len(ids) + self.step_words, self.step_words))
        per_batch = max(1, self.batch_words // self.step_words)
        starts = list(range(0, len(cuts) - 1, per_batch))
        # every rank the same number of batches (the last few of an epoch may be dropped, as
        # DistributedSampler drops them): ranks that step in lockstep never wait for another
        starts = starts[: len(starts) - len(starts) % self.world] if self.world > 1 else starts
        mine = [s for k, s in enumerate(starts) if k % self.world == self.rank]
        for s in mine[skip:]:
            steps = cuts[s : s + per_batch + 1]
            lo, hi = int(steps[0]), int(steps[-1])
            first = s * self.step_words
            last = min(len(ids), (s + len(steps) - 1) * self.step_words)
            # rounded at the cumulative boundaries so that an epoch sums to the corpus words
            raw = round(last * raw_per_kept) - round(first * raw_per_kept)
            yield {
                "inputs": torch.from_numpy(inputs[lo:hi].astype(np.int64)),
                "outputs": torch.from_numpy(outputs[lo:hi].astype(np.int64)),
                "steps": torch.from_numpy((steps - lo).astype(np.int64)),
                "raw_words": raw,
            }
