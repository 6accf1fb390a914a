"""Word2Vec's training: ``Word2VecModule``, the ``LightningModule``, and ``build``, which the
shared recipe calls.

``Word2VecModule`` trains with ``automatic_optimization=False``: each step is the model's
closed-form ``sgd_step`` with the learning rate decayed linearly, by corpus words seen, from
``optim.alpha`` to ``optim.min_alpha`` (gensim's schedule). Under DDP each rank trains on its
share of the batches and the tables are averaged across ranks at the end of every epoch.
Validation is the negative-sampling loss (``val_loss``, per example) on the validation
split's examples with fixed windows and noise words, so epochs and runs compare.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from llmworks.families.word2vec.data import Word2VecData, corpora
from llmworks.families.word2vec.model import Word2Vec, Word2VecConfig
from llmworks.families.word2vec.pairs import NegativeSampler
from llmworks.families.word2vec.settings import Word2VecOptimConfig, settings
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.spec import Built
from llmworks.training.metrics import ScoredModule, TokenMeans

VOCAB_FILE = "vocab.json"
LOGGED_LR = "lr-ClosedFormSGD"  # what LearningRateMonitor logs for the one-group optimizer below
Batch = dict[str, Any]


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
        # per-batch overhead off the hot loop. The steps are float32 arithmetic on float32
        # tables, written out by hand: a mixed-precision autocast (trainer=gpu's bf16-mixed)
        # would cast some of their products and not others.
        with torch.autocast(self.device.type, enabled=False):
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


def build(cfg: DictConfig, paths: Paths) -> Built:
    w, s = cfg.word2vec, settings(cfg)
    vocab, train, val, data_id = corpora(cfg, paths)
    config = replace(s.model, vocab_size=len(vocab))
    data = Word2VecData(
        vocab,
        train,
        val,
        s.data,
        config.sg,
        config.negative,
        int(cfg.seed),
    )
    module = Word2VecModule(
        config,
        s.optim,
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
    files = {VOCAB_FILE: vocab_file}
    if w.tokenizer:  # the vectors' words are its tokens: the model directory needs it to read text
        files[TOKENIZER_FILE] = paths.trained_tokenizer(str(w.tokenizer))
    return Built(module, data, data_id=data_id, files=files, inputs=source)
