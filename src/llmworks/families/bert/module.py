"""BERT's training: ``MLMModule``, the ``LightningModule`` (masked-LM pretraining on the
WordPiece shards), its scorer, and ``build``, which the shared recipe calls.

It logs ``train_loss`` every step and, over the fixed, seed-masked validation batches,
``val_mlm_loss`` (mean cross-entropy per masked token), ``val_mlm_acc`` (share of masked
tokens predicted exactly) and ``val_ppl``, every masked token counted once across batches and
DDP ranks.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch
from omegaconf import DictConfig

from llmworks.data.backend import data_config
from llmworks.families.bert.data import IGNORE_INDEX, MLMData
from llmworks.families.bert.hf import from_hf
from llmworks.families.bert.model import Bert, BertConfig
from llmworks.families.bert.settings import check_context, data_settings, settings
from llmworks.models import checkpoints
from llmworks.models.hub import check_tokenizer
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.spec import Built
from llmworks.training.metrics import ScoredModule, TokenMeans, perplexity
from llmworks.training.optim import MuonOrAdamWOptimizers, OptimConfig

Batch = dict[str, torch.Tensor]


class MaskedLMScores(TokenMeans):
    """Mean cross-entropy and accuracy per masked token, and the perplexity of that loss.
    Validation (``val_*``) and the test split (``test_*``)."""

    def __init__(self):
        super().__init__("mlm_loss", "mlm_acc")

    def update(self, model: Bert, batch: Batch) -> None:  # type: ignore[override]
        logits, loss = model(
            batch["input_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            ignore_index=IGNORE_INDEX,
        )
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        n = targets.numel()
        correct = (logits.argmax(-1) == targets).sum()
        super().update(n, mlm_loss=loss * n, mlm_acc=correct)

    def results(self) -> dict[str, float]:
        s = self.compute()
        return {
            "mlm_loss": s["mlm_loss"],
            "mlm_acc": s["mlm_acc"],
            "ppl": perplexity(s["mlm_loss"]),
            "tokens": int(s["count"]),
        }


class MLMModule(MuonOrAdamWOptimizers, ScoredModule):
    def __init__(
        self, config: BertConfig, optim: OptimConfig, mask_rate: float, model: Bert | None = None
    ):
        """``model``: weights to start from (an imported checkpoint); else a new ``Bert``."""
        super().__init__()
        self.save_hyperparameters({"model": asdict(config), "optim": asdict(optim)})
        self.model = model if model is not None else Bert(config)
        # without a next-sentence objective nothing trains the [CLS] pooler: freeze it so DDP
        # does not wait for its gradients (a downstream fine-tune unfreezes it)
        self.model.pooler.requires_grad_(False)
        self.optim = optim
        self.mask_rate = mask_rate
        self.scores = MaskedLMScores()
        self.flops_per_batch: float | None = None  # read by Lightning's ThroughputMonitor

    def samples_in_batch(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0]

    def tokens_in_batch(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())  # real tokens: padding is not throughput

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        _, loss = self.model(
            batch["input_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            ignore_index=IGNORE_INDEX,
        )
        seq_len = batch["input_ids"].shape[1]
        per_token = self.model.flops_per_token(seq_len, self.mask_rate)
        self.flops_per_batch = per_token * self.tokens_in_batch(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss


def data_module(cfg: DictConfig, paths: Paths, tokenizer_json: Path) -> MLMData:
    b = cfg.bert
    data = data_settings(cfg)
    shards = paths.tokens(str(b.tokenizer))
    stream = data_config(cfg).stream(shards, str(b.tokenizer))
    return MLMData(shards, tokenizer_json, data, int(cfg.seed), stream)


def build(cfg: DictConfig, paths: Paths) -> Built:
    """BERT's data and module from ``cfg.bert``: a new model of ``bert.model``, or, with
    ``bert.init_from``, a Hugging Face checkpoint's model and weights (its config replaces
    ``bert.model``; the shards must be encoded with its tokenizer)."""
    b, s = cfg.bert, settings(cfg)
    tok_json = paths.trained_tokenizer(str(b.tokenizer))
    data = data_module(cfg, paths, tok_json)
    model, base, data_id = None, None, data.shards.fingerprint
    if data.stream is not None:
        data_id = f"{data_id}/litdata"  # another order of batches: never resume across them
    inputs = {
        f"tokens-{b.tokenizer}": ("dataset", data.shards.root),
        f"tokenizer-{b.tokenizer}": ("tokenizer", tok_json),
    }
    if b.init_from:
        where = f"bert.init_from={b.init_from}"
        model, base = from_hf(str(b.init_from), where=where)
        model.train()  # from_hf returns it ready for inference; dropout must act here
        check_tokenizer(base, tok_json, model.config.vocab_size, where, str(b.tokenizer))
        config, data_id = model.config, f"{data_id}/{checkpoints.fingerprint(base)}"
        inputs["base-model"] = ("model", base)
    else:
        config = replace(s.model, vocab_size=data.vocab_size, pad_id=data.ids["pad"])
    check_context(data.cfg, config)  # an imported checkpoint's position table, too
    module = MLMModule(config, s.optim, data.cfg.mask_rate, model)
    return Built(
        module,
        data,
        data_id=data_id,
        files={TOKENIZER_FILE: tok_json},
        inputs=inputs,
        base=base,
    )
