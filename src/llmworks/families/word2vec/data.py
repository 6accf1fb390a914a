"""Word2Vec's data: the corpus as word ids (the words of the corpus, or a trained subword
tokenizer's tokens with ``word2vec.tokenizer``), the training batches (``PairStream``,
resumable mid-epoch) and fixed validation batches.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from llmworks.corpus.prepare import corpus_fingerprint, load_corpus
from llmworks.data.samplers import EvalSampler, loader_generator, rank_and_world, resume_point
from llmworks.data.shards import open_shards
from llmworks.errors import LlmworksError
from llmworks.families.word2vec.pairs import (
    Corpus,
    NegativeSampler,
    PairStream,
    examples,
    keep_probability,
)
from llmworks.families.word2vec.settings import Word2VecDataConfig
from llmworks.families.word2vec.vocab import WordVocab
from llmworks.paths import Paths
from llmworks.tokenization.files import read_tokenizer
from llmworks.words import token_as_word, tokenize


class Word2VecData(L.LightningDataModule):
    """Training batches (``PairStream``, resumable mid-epoch) and fixed validation batches."""

    def __init__(
        self,
        vocab: WordVocab,
        train: Corpus,
        validation: Corpus,
        data: Word2VecDataConfig,
        sg: bool,
        negative: int,
        seed: int,
    ):
        super().__init__()
        self.vocab, self.train, self.validation = vocab, train, validation
        self.cfg, self.sg, self.negative, self.seed = data, sg, negative, seed
        self.pad = len(vocab)  # the model's zero row pads CBOW windows

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        trainer = self.trainer
        stream = PairStream(
            self.train,
            keep_probability(self.vocab.counts, self.cfg.sample),
            self.cfg.window,
            self.sg,
            self.cfg.batch_words,
            self.cfg.step_words,
            self.seed,
            self.pad,
            trainer.global_rank,
            trainer.world_size,
        )
        # resuming: that epoch's examples again, without the batches already done
        stream.epoch, stream.skip = resume_point(trainer)
        return torch.utils.data.DataLoader(
            stream, batch_size=None, num_workers=0, generator=loader_generator(self.seed)
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Examples of the validation split with fixed windows and noise words (no
        subsampling), in batches of ``batch_words``; under DDP each rank takes every
        world-th batch, none twice."""
        rng = np.random.default_rng((self.seed, 1))
        ids = self.validation.ids[: self.cfg.val_words].astype(np.int64)
        docs = self.validation.doc_of[: len(ids)]
        inputs, outputs, _ = examples(ids, docs, self.cfg.window, self.sg, rng, self.pad)
        if len(outputs) == 0:
            raise LlmworksError(
                "word2vec: the validation split has no in-vocabulary word pairs; use a larger "
                "corpus, raise corpus.split.validation or lower word2vec.min_count"
            )
        generator = torch.Generator().manual_seed(self.seed)
        noise = NegativeSampler(self.vocab.counts)(len(outputs) * self.negative, generator)
        negatives = noise.view(-1, self.negative)
        rank, world = rank_and_world(self.trainer)
        # at least one batch per rank, and as many on each: every rank takes part in the sums
        n_batches = -(-max(-(-len(outputs) // self.cfg.batch_words), world) // world) * world
        size = -(-len(outputs) // n_batches)
        batches = [
            {
                "inputs": torch.from_numpy(inputs[lo : lo + size]),
                "outputs": torch.from_numpy(outputs[lo : lo + size]),
                "negatives": negatives[lo : lo + size],
            }
            for lo in range(0, len(outputs), size)
        ]
        sampler = EvalSampler(batches, world, rank)
        return torch.utils.data.DataLoader(
            batches, batch_size=None, sampler=sampler, generator=loader_generator(self.seed)
        )


def word_corpus(texts: list[list[str]], min_count: int) -> tuple[WordVocab, list[Corpus]]:
    """The vocabulary of the first text list (the train split) and every list as a corpus of
    its in-vocabulary word ids."""
    vocab = WordVocab.build(texts[0], min_count)
    return vocab, [Corpus(*vocab.encode(docs)) for docs in texts]


def subword_corpus(
    paths: Paths, name: str, min_count: int, splits: tuple[str, ...]
) -> tuple[WordVocab, list[Corpus]]:
    """The splits of a trained subword tokenizer (``data/tokens/<name>/`` shards) with its
    tokens as the words, the vocabulary cut at ``min_count`` on the first split; the
    end-of-text separators are dropped."""
    tok_json = paths.trained_tokenizer(name)
    shards = open_shards(paths.tokens(name), tok_json)
    tok = read_tokenizer(tok_json)
    V = shards.vocab_size
    first = np.asarray(shards.split(splits[0]).tokens, dtype=np.int64)
    counts = np.bincount(first, minlength=V)
    counts[shards.separator_id] = 0
    keep = np.flatnonzero(counts >= min_count)
    order = keep[np.argsort(-counts[keep], kind="stable")]
    remap = np.full(V, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    words = [token_as_word(tok.id_to_token(int(i)) or f"<{i}>") for i in order]
    corpora = []
    for split_name in splits:
        split = shards.split(split_name)
        ids = np.asarray(split.tokens, dtype=np.int64)
        mapped = remap[ids]
        kept = mapped >= 0
        offsets = np.concatenate([[0], np.cumsum(kept)])[split.offsets]
        raw = int((ids != shards.separator_id).sum())
        corpora.append(Corpus(mapped[kept].astype(np.int32), offsets, raw))
    return WordVocab(words, counts[order]), corpora


def corpora(cfg: DictConfig, paths: Paths) -> tuple[WordVocab, Corpus, Corpus, str]:
    """Vocabulary, train and validation corpus, and an identifier of the data they come from."""
    w = cfg.word2vec
    if w.tokenizer:
        name = str(w.tokenizer)
        vocab, (train, val) = subword_corpus(paths, name, int(w.min_count), ("train", "validation"))
        return vocab, train, val, open_shards(paths.tokens(name)).fingerprint
    corpus = load_corpus(paths)
    texts = [
        [tokenize(t, bool(w.lowercase)) for t in corpus[s]["text"]] for s in ("train", "validation")
    ]
    vocab, (train, val) = word_corpus(texts, int(w.min_count))
    return vocab, train, val, corpus_fingerprint(corpus)
