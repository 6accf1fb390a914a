"""The Word2Vec family: skip-gram or CBOW with negative sampling, on the words of the corpus
(or on a trained tokenizer's tokens, ``word2vec.tokenizer``).

``Word2VecModule`` trains with ``automatic_optimization=False``: each step is the model's
closed-form ``sgd_step`` with the learning rate decayed linearly, by corpus words seen, from
``optim.alpha`` to ``optim.min_alpha`` (gensim's schedule). Under DDP each rank trains on its
share of the batches and the tables are averaged across ranks at the end of every epoch.
Validation is the negative-sampling loss (``val_loss``, per example) on the validation
split's examples with fixed windows and noise words, so epochs and runs compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.skipgram import Corpus, NegativeSampler, PairStream, examples, keep_probability
from llmworks.data.windows import EvalSampler, loader_generator, resume_point
from llmworks.data.word_vocab import WordVocab, token_as_word, tokenize
from llmworks.errors import LlmworksError
from llmworks.export.model_card import CardSpec
from llmworks.models.word2vec import Word2Vec, Word2VecConfig
from llmworks.paths import Paths
from llmworks.training.metrics import ScoredModule, TokenMeans
from llmworks.training.recipe import Built, Family, require_tokenizer

VOCAB_FILE = "vocab.json"
Batch = dict[str, Any]


@dataclass(frozen=True)
class Word2VecDataConfig:
    """The ``word2vec.data`` section."""

    window: int  # maximum; each position draws its reduced window in [1, window]
    sample: float  # subsampling threshold (gensim's formula); 0 disables
    batch_words: int  # kept corpus words per Lightning batch ...
    step_words: int  # ... cut into SGD steps of this many
    val_words: int  # validation: the first words of the validation split


@dataclass(frozen=True)
class Word2VecOptimConfig:
    """The ``word2vec.optim`` section: SGD with a linearly decaying learning rate."""

    alpha: float
    min_alpha: float


class SkipGramScores(TokenMeans):
    """Mean negative-sampling loss per example (validation ``val_loss``)."""

    def __init__(self):
        super().__init__("loss")

    def update(self, model: Word2Vec, batch: Batch) -> None:  # type: ignore[override]
        total = model.loss(batch["inputs"], batch["outputs"], batch["negatives"])
        super().update(batch["outputs"].shape[0], loss=total)

    def results(self) -> dict[str, float]:
        s = self.compute()
        return {"loss": s["loss"], "examples": int(s["count"])}


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
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
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
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        sampler = EvalSampler(batches, world, rank)
        return torch.utils.data.DataLoader(
            batches, batch_size=None, sampler=sampler, generator=loader_generator(self.seed)
        )


class ClosedFormSGD(torch.optim.Optimizer):
    """The optimizer Lightning sees for Word2Vec. The model's ``sgd_step`` applies the
    updates, which have a closed form (no gradients); this holds the current learning rate
    and is stepped once per batch, so the step count, the learning-rate monitor and
    checkpoints work as for every other family."""

    def __init__(self, params, lr: float):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        return closure() if closure is not None else None


class Word2VecModule(ScoredModule):
    def __init__(
        self,
        config: Word2VecConfig,
        optim: Word2VecOptimConfig,
        counts: np.ndarray,
        total_words: int,
        seed: int,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.model = Word2Vec(config)
        self.optim = optim
        self.sampler = NegativeSampler(counts)
        self.total_words = total_words  # corpus words over all epochs: the lr schedule's length
        self.words_seen = 0.0
        self.seed = seed
        self.scores = SkipGramScores()
        self.flops_per_batch = None  # closed-form updates: no FLOP count for MFU

    def configure_optimizers(self) -> ClosedFormSGD:
        return ClosedFormSGD(self.model.parameters(), self.lr())

    def lr(self) -> float:
        progress = min(1.0, self.words_seen / max(1, self.total_words))
        return self.optim.alpha - (self.optim.alpha - self.optim.min_alpha) * progress

    def samples_in_batch(self, batch: Batch) -> int:
        """Training: SGD steps (of ``step_words`` kept words each); validation: examples."""
        return len(batch["steps"]) - 1 if "steps" in batch else int(batch["outputs"].shape[0])

    def tokens_in_batch(self, batch: Batch) -> int:
        """Training: corpus words before subsampling (what gensim's words/s counts);
        validation: examples."""
        return int(batch["raw_words"]) if "raw_words" in batch else int(batch["outputs"].shape[0])

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        inputs, outputs, steps = batch["inputs"], batch["outputs"], batch["steps"].tolist()
        optimizer = self.optimizers()
        group, k = self.model.config.group, self.model.config.negative
        # noise words seeded by (seed, epoch, batch, rank), not drawn from the global stream:
        # a run resumed from a checkpoint draws exactly what the uninterrupted run drew
        key = (self.seed, self.current_epoch, batch_idx, self.global_rank)
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence(key).generate_state(1)[0])
        )
        words_per_step = int(batch["raw_words"]) * self.trainer.world_size / max(1, len(steps) - 1)
        losses = []
        # One Lightning batch holds many small SGD steps: small steps keep the summed
        # updates of frequent words stable, one batch per many steps keeps Lightning's
        # per-batch overhead off the hot loop.
        for lo, hi in zip(steps[:-1], steps[1:], strict=True):
            if hi > lo:
                n = -(-(hi - lo) // group) * k
                negatives = self.sampler(n, generator).view(-1, k).to(self.device)
                losses.append(
                    self.model.sgd_step(inputs[lo:hi], outputs[lo:hi], negatives, self.lr())
                )
            self.words_seen += words_per_step
        optimizer.param_groups[0]["lr"] = self.lr()  # what the learning-rate monitor reads
        optimizer.step()
        if losses:
            self.log("train_loss", torch.stack(losses).mean(), on_step=True, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        if self.trainer.world_size > 1:
            for table in (self.model.input, self.model.output):
                table.data.copy_(self.trainer.strategy.reduce(table.data, reduce_op="mean"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["words_seen"] = self.words_seen  # where the lr schedule stands

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.words_seen = float(checkpoint["words_seen"])


# ----------------------------------------------------------------------------- corpus


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
    from tokenizers import Tokenizer

    from llmworks.data.shards import open_shards

    tok_json = require_tokenizer(paths, name)
    shards = open_shards(paths.tokens(name), tok_json)
    tok = Tokenizer.from_file(str(tok_json))
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
        from llmworks.data.shards import open_shards

        return vocab, train, val, open_shards(paths.tokens(name)).fingerprint
    from llmworks.corpus.prepare import corpus_fingerprint, load_corpus

    corpus = load_corpus(paths)
    texts = [
        [tokenize(t, bool(w.lowercase)) for t in corpus[s]["text"]] for s in ("train", "validation")
    ]
    vocab, (train, val) = word_corpus(texts, int(w.min_count))
    return vocab, train, val, corpus_fingerprint(corpus)


def build(cfg: DictConfig, paths: Paths) -> Built:
    w = cfg.word2vec
    vocab, train, val, data_id = corpora(cfg, paths)
    config = typed(Word2VecConfig, w.model, "word2vec.model", vocab_size=len(vocab))
    data = Word2VecData(
        vocab,
        train,
        val,
        typed(Word2VecDataConfig, w.data, "word2vec.data"),
        config.sg,
        config.negative,
        int(cfg.seed),
    )
    module = Word2VecModule(
        config,
        typed(Word2VecOptimConfig, w.optim, "word2vec.optim"),
        vocab.counts,
        int(w.train.max_epochs) * train.raw_words,
        int(cfg.seed),
    )
    vocab_file = paths.run("word2vec") / VOCAB_FILE  # the model directory's companion
    vocab_file.parent.mkdir(parents=True, exist_ok=True)
    vocab.save(vocab_file)
    source = (
        {f"tokens-{w.tokenizer}": ("dataset", paths.tokens(str(w.tokenizer)))}
        if w.tokenizer
        else {"corpus": ("dataset", paths.corpus_dataset)}
    )
    return Built(module, data, data_id=data_id, files={VOCAB_FILE: vocab_file}, inputs=source)


def export(built: Built, out: Path) -> None:
    """``vectors.txt`` / ``vectors.bin``: the word2vec C tool's formats, through gensim."""
    from llmworks.export.word2vec_format import keyed_vectors, save_word2vec

    save_word2vec(keyed_vectors(built.data.vocab.words, built.module.model.vectors.numpy()), out)


def evaluate(ev: Any) -> None:
    """Word similarity and analogies, neighbours of the probe words, a map of the vectors,
    and averaged word vectors as a text embedder."""
    model_dir = ev.require("word2vec")
    vocab = WordVocab.load(model_dir / VOCAB_FILE)
    vectors = Word2Vec.load(model_dir).vectors.numpy()
    w = ev.cfg.word2vec
    subword = ev.tokenizer(str(w.tokenizer)) if w.tokenizer else None
    ev.word_vectors("word2vec", vocab.words, vectors, bool(w.lowercase), subword)


WORD2VEC_FAMILY = Family(
    name="word2vec",
    title="Word2Vec",
    build=build,
    monitor="val_loss",
    metrics=("val_loss",),
    plots={
        "train": {
            "train_loss": "train_loss",
            "lr": "lr-ClosedFormSGD",
            "words_per_s_per_device": "train/device/items_per_sec",
        },
        "val": {"val_loss": "val_loss"},
    },
    export=export,
    evaluate=evaluate,
    card=CardSpec(
        pipeline_tag="feature-extraction",
        library="gensim",
        how_to_load=(
            "from gensim.models import KeyedVectors\n\n"
            'vectors = KeyedVectors.load_word2vec_format("{path}/vectors.bin", binary=True)\n'
            'print(vectors.most_similar("king"))'
        ),
    ),
)
