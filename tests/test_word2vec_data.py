"""Word2Vec's data (``families/word2vec/pairs.py``, ``vocab.py``): vocabulary, subsampling,
negatives and pair generation; and the word tokenizer it shares with bag-of-words."""

from __future__ import annotations

import numpy as np
import torch

from llmworks.families.word2vec.pairs import (
    Corpus,
    NegativeSampler,
    PairStream,
    cbow_windows,
    keep_probability,
    noise_distribution,
    skipgram_positions,
)
from llmworks.families.word2vec.vocab import WordVocab
from llmworks.words import tokenize

TEXT = "The cat sat on the mat. The dog's bone, the cat's toy: 42 things! Ünïcode wörds too."


def test_tokenize_lowercases_and_drops_digits_and_punctuation() -> None:
    assert tokenize(TEXT)[:6] == ["the", "cat", "sat", "on", "the", "mat"]
    assert "dog's" in tokenize(TEXT) and "42" not in tokenize(TEXT)
    assert "ünïcode" in tokenize(TEXT) and "The" in tokenize(TEXT, lowercase=False)


def test_vocab_min_count_order_and_encode(tmp_path) -> None:
    docs = [tokenize(TEXT), tokenize("the cat again")]
    vocab = WordVocab.build(docs, min_count=2)
    assert vocab.words[:2] == ["the", "cat"] and vocab.counts[0] == 5
    ids, offsets, raw = vocab.encode(docs)
    assert raw == sum(len(d) for d in docs)
    assert offsets.tolist() == [0, offsets[1], len(ids)] and set(ids.tolist()) <= {0, 1}
    vocab.save(tmp_path / "v.json")
    assert WordVocab.load(tmp_path / "v.json").words == vocab.words


def test_subsampling_matches_gensim() -> None:
    from gensim.models import Word2Vec

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301)
    docs = [list(rng.choice(words, size=50, p=p / p.sum())) for _ in range(200)]
    model = Word2Vec(vector_size=4, min_count=2, sample=1e-3, workers=1)
    model.build_vocab(docs)
    vocab = WordVocab.build(docs, min_count=2)
    ours = keep_probability(vocab.counts, 1e-3)
    theirs = np.array([model.wv.get_vecattr(w, "sample_int") / 2**32 for w in vocab.words])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours[0] < 0.5 and ours[-1] == 1.0


def test_negatives_follow_unigram_to_the_075() -> None:
    counts = np.array([1000, 100, 10, 1])
    sampler = NegativeSampler(counts, table_size=100_000)
    draws = sampler(200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    expected = noise_distribution(counts).double()
    assert torch.allclose(freq, expected, atol=0.005)


def test_skipgram_positions_shrinking_window_and_document_bounds() -> None:
    rng = np.random.default_rng(0)
    docs = np.repeat([0, 1], [30, 30])
    center, context = skipgram_positions(docs, 3, rng)
    dist = np.abs(center - context)
    assert dist.min() == 1 and dist.max() == 3
    assert (docs[center] == docs[context]).all()
    assert (np.diff(center) >= 0).all()  # corpus order
    # a shrinking window: on average (1 + 2 + 3) / 3 = 2 words each side of interior words
    per_center = np.bincount(center, minlength=60)
    assert 3.0 < per_center[5:25].mean() < 5.0 and per_center.max() <= 6
    # each center's window is symmetric: reduced window b gives 2b pairs when interior
    for c in range(5, 25):
        ctx = context[center == c] - c
        b = np.abs(ctx).max()
        assert sorted(ctx.tolist()) == [*range(-b, 0), *range(1, b + 1)]


def test_cbow_windows_pad_outside_window_and_document() -> None:
    rng = np.random.default_rng(0)
    ids = np.arange(10)
    docs = np.repeat([0, 1], 5)
    pos, ctx = cbow_windows(ids, docs, 2, rng, pad=99)
    assert ctx.shape == (len(pos), 4)
    for p, row in zip(pos, ctx, strict=True):
        real = row[row != 99]
        assert len(real) and (docs[real] == docs[p]).all() and p not in real


def test_pair_stream_covers_the_corpus_once_per_epoch_and_splits_ranks() -> None:
    ids = np.arange(1000, dtype=np.int32) % 50
    corpus = Corpus(ids, np.array([0, 500, 1000]), raw_words=1200)
    keep = np.ones(50)
    stream = PairStream(corpus, keep, 2, True, batch_words=256, step_words=64, seed=0, pad=50)
    batches = list(stream)
    assert sum(b["raw_words"] for b in batches) == 1200
    assert all(b["steps"][-1] == len(b["outputs"]) for b in batches)
    assert sum(len(b["outputs"]) for b in batches) > 2 * 1000  # ~3 pairs per word
    ranks = [
        list(PairStream(corpus, keep, 2, True, 256, 64, 0, 50, rank=r, world=2)) for r in (0, 1)
    ]
    assert len(ranks[0]) + len(ranks[1]) == len(batches)
