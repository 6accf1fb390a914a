"""Trainer factory, callbacks, loggers, checkpoint/resume and final save: see ``llmworks.training``."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig
from torch import nn

from llmworks.tracking import wandb_logger

log = logging.getLogger(__name__)

CHECKPOINT_DIR, LAST, BEST = "checkpoints", "last.ckpt", "best.ckpt"
CSV_DIR = "csv"

# dense bf16 peak FLOP/s per GPU, for MFU (matched against torch.cuda.get_device_name)
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


class Throughput(Callback):
    """Logs ``tokens_per_s`` (all ranks together) every step and, on a known GPU, ``mfu``.

    Tokens per batch come from ``pl_module.tokens_in_batch(batch)`` when the module has it,
    else from the first tensor of the batch. The first ``skip`` steps (compilation, warm
    caches) are left out of ``mean_tokens_per_s``, the figure the stages report.
    """

    def __init__(self, skip: int = 3):
        self.skip = skip
        self.tokens = 0.0
        self.seconds = 0.0
        self._t0: float | None = None
        self._seen = 0

    @property
    def mean_tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - self._t0
        first = batch[0] if isinstance(batch, list | tuple) else next(iter(batch.values()))
        n = (
            pl_module.tokens_in_batch(batch)
            if hasattr(pl_module, "tokens_in_batch")
            else first.numel()
        )
        n *= trainer.world_size
        self._seen += 1
        if self._seen > self.skip:
            self.tokens += n
            self.seconds += dt
        metrics = {"tokens_per_s": n / dt}
        peak = _peak_flops(pl_module.device)
        if peak and hasattr(pl_module, "flops_per_token"):
            metrics["mfu"] = pl_module.flops_per_token() * n / dt / (peak * trainer.world_size)
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, rank_zero_only=True)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def resume_checkpoint(
    model_dir: str | Path, hparams: Mapping[str, Any] | None = None, max_steps: int | None = None
) -> Path | None:
    """``<model_dir>/checkpoints/last.ckpt`` when a previous run of the stage crashed.

    Not resumed, but removed so that training starts afresh: a checkpoint saved with other
    ``hparams`` (a changed model or optimizer) and one that already reached ``max_steps`` (a
    finished run being repeated). Raising ``max_steps`` alone resumes and trains on."""
    last = Path(model_dir) / CHECKPOINT_DIR / LAST
    if not last.is_file():
        return None
    if hparams is not None or max_steps is not None:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        if hparams is not None and _plain(ckpt.get("hyper_parameters", {})) != _plain(hparams):
            reason = "was trained with other hyperparameters"
        elif max_steps is not None and int(ckpt.get("global_step", 0)) >= max_steps:
            reason = f"already reached max_steps={max_steps}"
        else:
            return last
        log.info("%s %s: starting afresh", last, reason)
        shutil.rmtree(last.parent)
        return None
    return last


def _plain(value: Any) -> Any:
    """Containers compared by value (OmegaConf/AttributeDict/tuple vs dict/list)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def build_trainer(
    trainer_cfg: Mapping[str, Any],
    train: Mapping[str, Any],
    callbacks: Sequence[Callback] = (),
    loggers: Sequence[Any] | bool = False,
    default_root_dir: str | Path | None = None,
) -> L.Trainer:
    """A ``lightning.Trainer`` from a ``conf/trainer`` preset (hardware: accelerator, devices,
    strategy, precision, num_nodes) and a model's ``train`` section (schedule: max_steps,
    val_check_interval, limit_val_batches, accumulate_grad_batches, gradient_clip_val,
    log_every_n_steps). Training is counted in steps; epochs only number passes over the data."""
    val_every = train.get("val_check_interval")
    return L.Trainer(
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=trainer_cfg.get("devices", "auto"),
        strategy=trainer_cfg.get("strategy", "auto"),
        precision=trainer_cfg.get("precision", "32-true"),
        num_nodes=int(trainer_cfg.get("num_nodes", 1)),
        max_steps=int(train["max_steps"]),
        max_epochs=-1,
        val_check_interval=int(val_every) if val_every else None,
        check_val_every_n_epoch=None if val_every else 1,
        limit_val_batches=train.get("limit_val_batches"),
        accumulate_grad_batches=int(train.get("accumulate_grad_batches", 1)),
        gradient_clip_val=train.get("gradient_clip_val"),
        log_every_n_steps=int(train.get("log_every_n_steps", 10)),
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
        logger=list(loggers) if loggers else False,
        enable_progress_bar=bool(train.get("progress_bar", False)),
        enable_model_summary=False,
        default_root_dir=str(default_root_dir) if default_root_dir else None,
    )


@dataclass
class FitResult:
    """What ``fit`` hands back: the trainer, the final validation metrics (every rank has
    them), the mean training tokens/s, and whether this process should write artifacts."""

    trainer: L.Trainer
    metrics: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = float("nan")
    resumed_from: Path | None = None

    @property
    def is_global_zero(self) -> bool:
        return self.trainer.is_global_zero


def fit(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    cfg: DictConfig,
    *,
    train: Mapping[str, Any],
    model_dir: str | Path,
    job_type: str,
    monitor: str = "val_loss",
) -> FitResult:
    """Train ``module`` on ``datamodule``, resuming from ``last.ckpt`` if the stage crashed
    before, then validate the final weights once more; see the package docstring."""
    model_dir = Path(model_dir)
    ckpt_dir = model_dir / CHECKPOINT_DIR
    resume = resume_checkpoint(model_dir, dict(module.hparams), int(train["max_steps"]))
    if resume is None and (model_dir / CSV_DIR).exists():
        shutil.rmtree(model_dir / CSV_DIR, ignore_errors=True)  # a fresh run starts a fresh log
    if resume is not None:
        log.info("resuming from %s", resume)
    throughput = Throughput()
    callbacks = [
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best",
            monitor=monitor,
            mode="min",
            save_top_k=1,
            save_last=True,
            enable_version_counter=False,
        ),
        LearningRateMonitor(logging_interval="step"),
        throughput,
    ]
    loggers: list[Any] = [CSVLogger(save_dir=str(model_dir), name=CSV_DIR, version="")]
    wb = wandb_logger(cfg, job_type)
    if wb is not None:
        loggers.append(wb)
    trainer = build_trainer(cfg.trainer, train, callbacks, loggers, default_root_dir=model_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    final = trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics |= {k: float(v) for k, v in (final[0] if final else {}).items()}
    result = FitResult(trainer, metrics, throughput.mean_tokens_per_s, resume)
    if wb is not None and trainer.is_global_zero:
        wb.log_metrics(
            {f"final/{k}": v for k, v in metrics.items()}
            | {"final/tokens_per_s": result.tokens_per_s}
        )
        _finish_wandb()
    return result


def _finish_wandb() -> None:
    try:
        import wandb

        wandb.finish()  # so that the next stage / multirun job starts its own run
    except Exception as exc:  # pragma: no cover - logging must never stop training
        log.warning("wandb.finish failed: %s", exc)


def save_final(model: nn.Module, config: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Final weights as ``model.safetensors`` (shared/tied tensors stored once) + ``config.json``."""
    from safetensors.torch import save_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(dict(config), indent=2) + "\n")
    return out_dir


def write_plots(
    model_dir: str | Path, out_dir: str | Path, prefix: str, series: Mapping[str, Mapping[str, str]]
) -> dict[str, Path]:
    """Turn Lightning's mixed ``metrics.csv`` into one clean CSV per series for ``dvc plots``:
    ``series={"train": {"train_loss": "train_loss", "lr": "lr-AdamW/pg1"}}`` writes
    ``<out_dir>/<prefix>_train.csv`` with columns ``step,train_loss,lr`` (output name: logged
    name), one row per step at which the first column was logged."""
    src = Path(model_dir) / CSV_DIR / "metrics.csv"
    rows = list(csv.DictReader(src.open())) if src.is_file() else []
    by_step: dict[int, dict[str, str]] = {}
    for row in rows:  # Lightning writes one row per log call; merge them per step
        merged = by_step.setdefault(int(row["step"]), {})
        merged.update({k: v for k, v in row.items() if v not in (None, "")})
    written = {}
    for name, cols in series.items():
        path = Path(out_dir) / f"{prefix}_{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        first = next(iter(cols.values()))
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", *cols])
            for step in sorted(by_step):
                if first in by_step[step]:
                    writer.writerow([step, *(by_step[step].get(c, "") for c in cols.values())])
        written[name] = path
    return written
