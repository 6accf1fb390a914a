"""BERT masked-LM pretraining: the ``LightningModule`` and the ``train_bert`` stage.

The module logs ``train_loss`` every step and, over the fixed, seed-masked validation
batches, ``val_mlm_loss`` (mean cross-entropy per masked token), ``val_mlm_acc`` (share of
masked tokens predicted exactly) and ``val_ppl`` (``exp`` of the loss), all averaged per
masked token across batches and devices. Everything else -- Trainer, checkpoints, resume,
loggers -- is ``llmworks.training.fit``.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import SumMetric

from llmworks.data.encode import tokens_dir
from llmworks.data.mlm import IGNORE_INDEX, MLMData
from llmworks.errors import LlmworksError
from llmworks.export.hf_bert import export_hf
from llmworks.io import write_json
from llmworks.models.bert import Bert, BertConfig
from llmworks.tokenization.train import TOKENIZER_FILE, tokenizer_path
from llmworks.training import configure_adamw, fit, write_plots

log = logging.getLogger(__name__)


class MLMModule(L.LightningModule):
    def __init__(self, model: dict[str, Any], optim: dict[str, Any]):
        super().__init__()
        self.save_hyperparameters()
        self.model = Bert(BertConfig(**model))
        # without a next-sentence objective nothing trains the [CLS] pooler: freeze it so DDP
        # does not wait for its gradients (a downstream fine-tune unfreezes it)
        self.model.pooler.requires_grad_(False)
        self.optim = optim
        # summed over batches and devices, divided at the end: a mean per masked token
        self.val_loss_sum, self.val_correct, self.val_count = SumMetric(), SumMetric(), SumMetric()

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(
            batch["input_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            ignore_index=IGNORE_INDEX,
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self(batch)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits, loss = self(batch)
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        self.val_loss_sum.update(loss * targets.numel())
        self.val_correct.update((logits.argmax(-1) == targets).sum())
        self.val_count.update(targets.numel())

    def on_validation_epoch_end(self) -> None:
        n = max(float(self.val_count.compute()), 1.0)
        loss = float(self.val_loss_sum.compute()) / n
        self.log_dict(
            {
                "val_mlm_loss": loss,
                "val_mlm_acc": float(self.val_correct.compute()) / n,
                "val_ppl": math.exp(min(loss, 50.0)),
            },
            sync_dist=False,
        )
        for m in (self.val_loss_sum, self.val_correct, self.val_count):
            m.reset()

    def tokens_in_batch(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())  # real tokens: padding is not throughput

    def configure_optimizers(self):
        return configure_adamw(self.model, self.optim, self.trainer.max_steps, self.trainer)


def bert_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.models) / "bert"


def train_bert(cfg: DictConfig) -> dict[str, float]:
    """The ``train_bert`` stage: pretrain on ``data/tokens/<bert.tokenizer>``, then write
    ``models/bert/`` (checkpoints, ``model.safetensors`` + ``config.json``, ``tokenizer.json``,
    the HF export in ``hf/``), ``metrics/bert.json`` and ``metrics/bert_{train,val}.csv`` (DVC plots)."""
    b = cfg.bert
    tok_json = tokenizer_path(cfg, b.tokenizer)
    if not tok_json.is_file():
        raise LlmworksError(f"{tok_json} does not exist; run the tokenizer stage (dvc repro)")
    data = MLMData(tokens_dir(cfg, b.tokenizer), tok_json, b.data)
    fields = OmegaConf.to_container(b.model, resolve=True)
    try:  # a bad switch (norm: mid) or shape (n_head does not divide d_model) is the user's
        model_cfg = BertConfig(vocab_size=data.vocab_size, pad_id=data.ids["pad"], **fields)
    except (TypeError, ValueError) as exc:
        raise LlmworksError(f"bert.model: {exc}") from exc
    if b.data.max_seq_len > model_cfg.max_seq_len:
        raise LlmworksError(
            f"bert.data.max_seq_len={b.data.max_seq_len} exceeds the model's "
            f"position table bert.model.max_seq_len={model_cfg.max_seq_len}"
        )
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    module = MLMModule(asdict(model_cfg), OmegaConf.to_container(b.optim, resolve=True))
    out = bert_dir(cfg)
    result = fit(
        module,
        data,
        cfg,
        train=b.train,
        model_dir=out,
        job_type="train_bert",
        monitor="val_mlm_loss",
    )
    if not result.is_global_zero:  # under DDP only rank 0 writes artifacts
        return result.metrics
    model = module.model.cpu().eval()
    model.save(out)
    shutil.copyfile(tok_json, out / TOKENIZER_FILE)  # fill-mask needs nothing but models/bert
    export_hf(model, tok_json, out / "hf")
    metrics = {k: result.metrics[k] for k in ("val_mlm_loss", "val_mlm_acc", "val_ppl")}
    tokens_per_s = result.tokens_per_s if math.isfinite(result.tokens_per_s) else None
    metrics |= {
        "train_loss": result.metrics.get("train_loss"),
        "tokens_per_s": tokens_per_s,
        "steps": int(result.trainer.global_step),
        "params": model.num_params(non_embedding=False),
        "world_size": int(result.trainer.world_size),
    }
    write_json(Path(cfg.paths.metrics) / "bert.json", metrics)
    write_plots(
        out,
        cfg.paths.metrics,
        "bert",
        {
            "train": {
                "train_loss": "train_loss",
                "lr": "lr-AdamW/pg1",
                "tokens_per_s": "tokens_per_s",
            },
            "val": {
                "val_mlm_loss": "val_mlm_loss",
                "val_mlm_acc": "val_mlm_acc",
                "val_ppl": "val_ppl",
            },
        },
    )
    log.info("bert: %s", metrics)
    return metrics


def fill_mask(
    model_dir: str | Path, texts: list[str], top_k: int = 5
) -> list[list[list[tuple[str, float]]]]:
    """For each text, for each ``[MASK]`` in it, the ``top_k`` (token, probability) pairs of
    the model saved in ``model_dir`` (``model.safetensors`` + ``config.json`` + ``tokenizer.json``)."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file() or not (model_dir / TOKENIZER_FILE).is_file():
        raise LlmworksError(f"{model_dir} holds no trained BERT; run the train_bert stage first")
    model, tok = Bert.load(model_dir), Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
    mask_id = tok.token_to_id("[MASK]")
    results = []
    for text in texts:
        ids = torch.tensor(tok.encode(text).ids[: model.config.max_seq_len])
        if not (ids == mask_id).any():
            raise LlmworksError(
                f"no [MASK] in {text!r}: write [MASK] where a word should be filled"
            )
        probs, top = model.fill_mask(ids, mask_id, top_k)
        results.append(
            [
                [(tok.id_to_token(int(i)), float(p)) for p, i in zip(row_p, row_i, strict=True)]
                for row_p, row_i in zip(probs, top, strict=True)
            ]
        )
    return results


def run_fill_mask(cfg: DictConfig) -> list:
    """``pipelines/fill_mask.py``: print the top-k fillers of every ``[MASK]`` in ``text``."""
    fm = cfg.bert.fill_mask
    if not fm.text:
        raise LlmworksError(
            'give a text: python pipelines/fill_mask.py text="Paris is the [MASK]."'
        )
    texts = [fm.text] if isinstance(fm.text, str) else list(fm.text)
    results = fill_mask(fm.model_dir or bert_dir(cfg), texts, int(fm.top_k))
    for text, masks in zip(texts, results, strict=True):
        print(text)
        for m, candidates in enumerate(masks):
            print(f"  [MASK] #{m + 1}:")
            for token, p in candidates:
                print(f"    {p:7.2%}  {token}")
    return results
