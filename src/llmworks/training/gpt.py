"""Stage ``train_gpt``: token shards -> a trained GPT in ``models/gpt`` + ``metrics/gpt.json``.

Reads ``gpt`` (``tokenizer``, ``model``, ``data``, ``optim``, ``train``), ``trainer``,
``paths``, ``seed``, ``logger``, ``experiment_name``. Writes ``<paths.models>/gpt/``:
``checkpoints/{last,best}.ckpt``, ``model.safetensors`` + ``config.json`` (final weights),
``tokenizer.json`` (so the directory is self-contained), ``hf/`` (transformers export) and
``csv/metrics.csv``; ``<paths.metrics>/gpt.json`` and ``gpt_{train,val}.csv`` for DVC plots.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from llmworks.data.encode import tokens_dir
from llmworks.data.shards import open_shards
from llmworks.data.windows import WindowDataModule
from llmworks.errors import LlmworksError
from llmworks.io import write_json
from llmworks.models.gpt import GPTConfig
from llmworks.tokenization.train import tokenizer_path
from llmworks.training.lm import CausalLM
from llmworks.training.trainer import fit, write_plots

log = logging.getLogger(__name__)


def gpt_tokenizer(cfg: DictConfig) -> Path:
    path = tokenizer_path(cfg, str(cfg.gpt.tokenizer))
    if not path.is_file():
        raise LlmworksError(
            f"{path} not found; train it first (dvc repro train_tokenizer@{cfg.gpt.tokenizer})"
        )
    return path


def model_config(cfg: DictConfig, vocab_size: int) -> GPTConfig:
    fields = OmegaConf.to_container(cfg.gpt.model, resolve=True)
    try:
        return GPTConfig(vocab_size=vocab_size, **fields)
    except (TypeError, ValueError) as exc:
        raise LlmworksError(f"gpt.model: {exc}") from exc


def train_gpt(cfg: DictConfig) -> dict[str, Any]:
    g = cfg.gpt
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    tok_json = gpt_tokenizer(cfg)
    shards_root = tokens_dir(cfg, str(g.tokenizer))
    shards = open_shards(shards_root, tok_json)
    mcfg = model_config(cfg, shards.vocab_size)
    model_dir = Path(cfg.paths.models) / "gpt"
    datamodule = WindowDataModule(
        shards_root,
        tok_json,
        mcfg.block_size,
        int(g.data.batch_size),
        int(g.data.val_windows),
        int(cfg.seed),
        int(g.data.num_workers),
    )
    module = CausalLM(
        asdict(mcfg),
        OmegaConf.to_container(g.optim, resolve=True),
        bytes_per_token=shards.bytes_per_token.get("validation"),
        compile=bool(g.train.compile),
    )
    result = fit(module, datamodule, cfg, train=g.train, model_dir=model_dir, job_type="train_gpt")
    if not result.is_global_zero:
        return {}
    model = module.model
    model.save(model_dir)
    shutil.copyfile(tok_json, model_dir / "tokenizer.json")
    if g.train.export_hf:
        from llmworks.export.hf_gpt import export_hf, hf_architecture

        try:
            hf_architecture(mcfg)
            export_hf(model, tok_json, model_dir / "hf")
        except LlmworksError as exc:
            log.warning("skipping the Hugging Face export: %s", exc)
    m = result.metrics
    metrics = {
        "val_loss": m.get("val_loss"),
        "val_ppl": m.get("val_ppl"),
        "val_bpb": m.get("val_bpb"),
        "tokens_per_s": None if math.isnan(result.tokens_per_s) else result.tokens_per_s,
        "train_loss": m.get("train_loss"),
        "steps": int(result.trainer.global_step),
        "params": model.num_params(),
        "world_size": int(result.trainer.world_size),
    }
    if mcfg.mlp == "moe":
        metrics["val_aux_loss"] = m.get("val_aux_loss")
    metrics_dir = Path(cfg.paths.metrics)
    write_json(metrics_dir / "gpt.json", metrics)
    write_plots(
        model_dir,
        metrics_dir,
        "gpt",
        {
            "train": {
                "train_loss": "train_loss",
                "lr": "lr-AdamW/pg1",
                "tokens_per_s": "tokens_per_s",
            },
            "val": {"val_loss": "val_loss", "val_bpb": "val_bpb"},
        },
    )
    log.info("train_gpt: %s", {k: v for k, v in metrics.items() if v is not None})
    return metrics
