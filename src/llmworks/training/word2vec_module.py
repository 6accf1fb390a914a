"""Word2Vec through Lightning: data, module and the ``train_word2vec`` stage.

The module trains with ``automatic_optimization=False``: each step is the model's closed-form
``sgd_step`` with the learning rate decayed linearly, by corpus words seen, from ``alpha`` to
``min_alpha`` (gensim's schedule). Under DDP each rank trains on its share of chunks and the
tables are averaged across ranks at the end of every epoch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from llmworks.data.skipgram import Corpus, NegativeSampler, PairStream, keep_probability
from llmworks.data.word_vocab import WordVocab, token_as_word, tokenize
from llmworks.errors import LlmworksError
from llmworks.models.word2vec import Word2Vec, Word2VecConfig
from llmworks.training.trainer import CSV_DIR, write_plots

log = logging.getLogger(__name__)


class Word2VecModule(L.LightningModule):
    def __init__(
        self,
        vocab_counts: np.ndarray,
        dim: int = 100,
        sg: bool = True,
        negative: int = 5,
        group: int = 64,
        alpha: float = 0.025,
        min_alpha: float = 0.0001,
        total_words: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["vocab_counts"])
        self.automatic_optimization = False
        torch.manual_seed(seed)
        self.model = Word2Vec(Word2VecConfig(len(vocab_counts), dim, sg, negative, group))
        self.sampler = NegativeSampler(vocab_counts)
        self.words_seen = 0
        self.train_seconds = 0.0
        self._t0: float | None = None

    def configure_optimizers(self):
        return None  # updates are applied by the model's sgd_step

    def lr(self) -> float:
        hp = self.hparams
        progress = min(1.0, self.words_seen / max(1, hp.total_words))
        return hp.alpha - (hp.alpha - hp.min_alpha) * progress

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        inputs, outputs, steps = batch["inputs"], batch["outputs"], batch["steps"].tolist()
        G, k = self.hparams.group, self.hparams.negative
        n_steps = max(1, len(steps) - 1)
        words_per_step = int(batch["raw_words"]) * self.trainer.world_size / n_steps
        losses = []
        # One Lightning batch holds many small SGD steps: small steps keep the summed
        # updates of frequent words stable, one batch per many steps keeps Lightning's
        # per-batch overhead off the hot loop.
        for lo, hi in zip(steps[:-1], steps[1:], strict=True):
            if hi > lo:
                negatives = self.sampler(-(-(hi - lo) // G) * k).view(-1, k).to(self.device)
                losses.append(
                    self.model.sgd_step(inputs[lo:hi], outputs[lo:hi], negatives, self.lr())
                )
            self.words_seen += words_per_step
        if losses:
            loss = torch.stack(losses).mean()
            self.log_dict({"train_loss": loss, "lr": self.lr()}, on_step=True)
        return None

    def on_train_epoch_start(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        if self.trainer.world_size > 1:
            for table in (self.model.input, self.model.output):
                table.data.copy_(self.trainer.strategy.reduce(table.data, reduce_op="mean"))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        if self._t0 is not None:
            self.train_seconds += time.perf_counter() - self._t0

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _load_texts(cfg: DictConfig, split: str) -> list[str]:
    from datasets import load_from_disk

    path = Path(cfg.paths.data) / "corpus" / "dataset"
    if not path.exists():
        raise LlmworksError(f"{path} not found: run the prepare_corpus stage first")
    return list(load_from_disk(str(path))[split]["text"])


def build_corpus(texts: list[str], min_count: int, lowercase: bool) -> tuple[WordVocab, Corpus]:
    docs = [tokenize(t, lowercase) for t in texts]
    vocab = WordVocab.build(docs, min_count)
    ids, offsets, raw = vocab.encode(docs)
    return vocab, Corpus(ids, offsets, raw)


def subword_corpus(cfg: DictConfig, name: str) -> tuple[WordVocab, Corpus]:
    """The train split of a trained subword tokenizer (``data/tokens/<name>/`` shards) with
    its tokens as the words; the end-of-text separators are dropped."""
    from tokenizers import Tokenizer

    from llmworks.data.shards import open_shards

    tok_json = Path(cfg.paths.data) / "tokenizers" / name / "tokenizer.json"
    if not tok_json.is_file():
        raise LlmworksError(f"{tok_json} not found: train tokenizer {name!r} first")
    shards = open_shards(Path(cfg.paths.data) / "tokens" / name, tok_json)
    split = shards.split("train")
    ids = np.asarray(split.tokens, dtype=np.int64)
    V = shards.vocab_size
    tok = Tokenizer.from_file(str(tok_json))
    counts = np.bincount(ids, minlength=V)
    counts[shards.separator_id] = 0
    keep = np.flatnonzero(counts >= int(cfg.word2vec.min_count))
    order = keep[np.argsort(-counts[keep], kind="stable")]
    remap = np.full(V, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    mapped = remap[ids]
    kept = mapped >= 0
    offsets = np.concatenate([[0], np.cumsum(kept)])[split.offsets]
    words = [token_as_word(tok.id_to_token(int(i)) or f"<{i}>") for i in order]
    vocab = WordVocab(words, counts[order])
    raw = int((ids != shards.separator_id).sum())
    return vocab, Corpus(mapped[kept].astype(np.int32), offsets, raw)


def fit_word2vec(
    vocab: WordVocab,
    corpus: Corpus,
    w: Any,
    trainer_cfg: Any | None = None,
    seed: int = 0,
    loggers: Any = False,
) -> tuple[Word2VecModule, L.Trainer, float]:
    """Train on a prepared corpus with the ``word2vec`` config ``w``; returns the module, the
    trainer and corpus words per second of training (pre-subsampling, as gensim counts)."""
    tc = trainer_cfg or {}
    if w.get("threads"):
        torch.set_num_threads(int(w.threads))
    epochs = int(w.epochs)
    module = Word2VecModule(
        vocab.counts,
        dim=int(w.dim),
        sg=bool(w.sg),
        negative=int(w.negative),
        group=int(w.group),
        alpha=float(w.alpha),
        min_alpha=float(w.min_alpha),
        total_words=epochs * corpus.raw_words,
        seed=seed,
    )
    trainer = L.Trainer(
        accelerator=tc.get("accelerator", "cpu"),
        devices=tc.get("devices", 1),
        strategy=tc.get("strategy", "auto"),
        num_nodes=int(tc.get("num_nodes", 1)),
        precision="32-true",
        max_epochs=epochs,
        logger=loggers,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=int(w.get("log_every_n_steps", 10)),
        num_sanity_val_steps=0,
    )
    stream = PairStream(
        corpus,
        keep_probability(vocab.counts, float(w.sample)),
        int(w.window),
        bool(w.sg),
        int(w.batch_words),
        int(w.step_words),
        seed,
        module.model.pad,
        trainer.global_rank,
        trainer.world_size,
    )
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=0)
    trainer.fit(module, loader)
    words_per_s = epochs * corpus.raw_words / max(module.train_seconds, 1e-9)
    return module, trainer, words_per_s


def train_word2vec(cfg: DictConfig) -> dict[str, float]:
    """The ``train_word2vec`` stage: corpus -> models/word2vec/ + metrics/word2vec.json."""
    from llmworks.evaluation.word_similarity import evaluate
    from llmworks.export.word2vec_format import save_binary, save_text
    from llmworks.tracking import wandb_logger

    w = cfg.word2vec
    L.seed_everything(int(cfg.seed), verbose=False)
    if w.get("tokenizer"):
        vocab, corpus = subword_corpus(cfg, str(w.tokenizer))
    else:
        texts = _load_texts(cfg, "train")
        vocab, corpus = build_corpus(texts, int(w.min_count), bool(w.lowercase))
    log.info("word2vec: %d words in vocabulary, %d corpus words", len(vocab), corpus.raw_words)
    out = Path(cfg.paths.models) / "word2vec"
    out.mkdir(parents=True, exist_ok=True)
    # the CSV log feeds the DVC plot and the report's training curves
    loggers: list[Any] = [CSVLogger(save_dir=str(out), name=CSV_DIR, version="")]
    wb = wandb_logger(cfg, "train_word2vec")
    if wb is not None:
        loggers.append(wb)
    module, trainer, words_per_s = fit_word2vec(
        vocab, corpus, w, cfg.trainer, int(cfg.seed), loggers
    )
    trainer.save_checkpoint(out / "word2vec.ckpt")  # collective under DDP: every rank calls
    if not trainer.is_global_zero:
        return {}
    vectors = module.model.vectors.detach().cpu().numpy()
    save_text(out / "vectors.txt", vocab.words, vectors)
    save_binary(out / "vectors.bin", vocab.words, vectors)
    vocab.save(out / "vocab.json")
    metrics, neighbours = evaluate(vocab.words, vectors, list(w.get("probe_words") or []))
    metrics |= {
        "words_per_s": words_per_s,
        "train_seconds": module.train_seconds,
        "vocab_size": len(vocab),
        "corpus_words": corpus.raw_words,
    }
    (out / "neighbours.json").write_text(json.dumps(neighbours, indent=1), encoding="utf-8")
    mdir = Path(cfg.paths.metrics)
    mdir.mkdir(parents=True, exist_ok=True)
    # NaN (too few covered pairs) is not JSON: written as null
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    (mdir / "word2vec.json").write_text(json.dumps(clean, indent=2), encoding="utf-8")
    write_plots(out, mdir, "word2vec", {"train": {"train_loss": "train_loss", "lr": "lr"}})
    if wb is not None:
        wb.log_metrics({f"final/{k}": v for k, v in metrics.items() if v == v})
        try:
            import wandb

            wandb.finish()
        except Exception as exc:  # logging must never stop training
            log.warning("wandb.finish failed: %s", exc)
    log.info("word2vec metrics:\n%s", OmegaConf.to_yaml(OmegaConf.create(metrics)))
    return metrics
