"""The one training-stage recipe every model family runs (``train@<family>``).

seed -> paths -> the family builds its data and ``LightningModule`` -> the shared ``fit``
(trainer, callbacks, loggers, checkpoints, resume) -> on rank 0: final weights, the
tokenizer beside them and the family's exports, staged and moved into ``models/<family>/`` at
once; ``metrics/train/<family>.json`` and the ``dvc plots`` CSVs, written atomically; the
final numbers in W&B. The family is a spec (``llmworks.spec.Family``): nothing here names
one.
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed
from llmworks.corpus.config import corpus_config
from llmworks.errors import LlmworksError
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.spec import Built, ExportUnsupported, Family, family, names
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import experiment_group, finish_wandb
from llmworks.training.callbacks import SECONDS, TOKENS, TOKENS_PER_S_PER_DEVICE
from llmworks.training.fit import FitResult, fit
from llmworks.training.logs import write_plots
from llmworks.training.model_card import write_card
from llmworks.training.sharding import FSDPConfig, full_model

log = logging.getLogger(__name__)


def training_stage(cfg: DictConfig) -> dict[str, Any]:
    """The ``train@<family>`` stage: trains the family that ``cfg.family`` names."""
    if not cfg.family:
        raise LlmworksError(f"name the family to train: family=<one of {names(cfg)}>")
    return train(family(str(cfg.family), names(cfg)), cfg)


def train(family: Family, cfg: DictConfig) -> dict[str, Any]:
    """Train ``family`` as ``cfg`` says. Returns the metrics written to
    ``metrics/train/<family>.json`` (on rank 0; the final validation metrics on other ranks)."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    paths = Paths.from_config(cfg)
    built = family.build(cfg, paths)
    built.module.fsdp = typed(FSDPConfig, cfg.fsdp, "fsdp")  # used under trainer=fsdp only
    result = fit(cfg, family, built.module, built.data, paths.run(family.name), built.data_id)
    try:
        # sharded (trainer=fsdp): every rank takes part in gathering the full weights
        full = full_model(built.module.model, result.trainer.is_global_zero)
        if not result.trainer.is_global_zero:
            return result.metrics
        built.module.model = full
        metrics = final_metrics(family, result)
        save_artifacts(family, built, paths.model(family.name), cfg, metrics)
        write_json(paths.train_metrics(family.name), metrics)
        write_plots(
            result.log,
            {s: paths.plot_csv(family.name, s) for s in family.plots},
            family.plots,
        )
        if result.wandb is not None:
            result.wandb.log_metrics({f"final/{k}": v for k, v in metrics.items() if v is not None})
            log_lineage(
                result.wandb.experiment,
                cfg,
                dict(built.inputs),
                {f"model-{family.name}": ("model", family.exported(paths.model(family.name)))},
                {k: v for k, v in metrics.items() if v is not None},
            )
        result.run.mark_finished()
    finally:
        finish_wandb(result.wandb)
    log.info("train@%s: %s", family.name, {k: v for k, v in metrics.items() if v is not None})
    return metrics


def final_metrics(family: Family, result: FitResult) -> dict[str, Any]:
    """The family's final validation metrics and what every family reports besides. A
    non-finite validation metric means training diverged: nothing is saved over the last
    good model, and the checkpoints stay for inspection."""
    m, trainer = result.metrics, result.trainer
    kept = {k: m[k] for k in family.metrics if k in m}
    bad = [k for k, v in kept.items() if not math.isfinite(v)]
    if bad:
        raise LlmworksError(
            f"training diverged: {', '.join(f'{k}={kept[k]}' for k in bad)} after "
            f"{trainer.global_step} steps; {family.divergence_hint}"
        )
    logged = [result.log[s] for s in sorted(result.log)]
    train_loss = [row["train_loss"] for row in logged if "train_loss" in row]
    model = result.trainer.lightning_module.model
    return kept | {
        "train_loss": train_loss[-1] if train_loss else None,  # the last one logged
        "tokens_per_s": tokens_per_s(logged, trainer.world_size),
        "steps": int(trainer.global_step),
        "params": sum(p.numel() for p in model.parameters()),
        "world_size": int(trainer.world_size),
    }


def tokens_per_s(logged: list[Mapping[str, float]], world_size: int) -> float | None:
    """Training tokens per second over all devices: the median of ThroughputMonitor's rolling
    windows (steady state, not the warm-up), or for a run too short to fill one window the
    running totals. Validation time is not counted."""
    windows = [row[TOKENS_PER_S_PER_DEVICE] for row in logged if TOKENS_PER_S_PER_DEVICE in row]
    if windows:
        return statistics.median(windows) * world_size
    totals = [row for row in logged if row.get(SECONDS)]
    return totals[-1][TOKENS] / totals[-1][SECONDS] * world_size if totals else None


def save_artifacts(
    family: Family, built: Built, out: Path, cfg: DictConfig, metrics: dict[str, Any]
) -> Path:
    """Final weights (``model.safetensors`` + ``config.json``), the files the model needs, the
    family's exports and their model card, written to a scratch directory and moved into
    place at once."""
    with scratch_dir(out.parent, out.name) as tmp:
        staged = tmp / out.name
        built.module.model.cpu().eval().save(staged)
        for name, source in built.files.items():
            shutil.copyfile(source, staged / name)
        if bool(cfg[family.name].export) and family.export is not None:
            try:
                family.export(built, family.export_dir(staged))
            except ExportUnsupported as exc:
                log.warning("train@%s: skipping the export: %s", family.name, exc)
        if family.card is not None:
            section = cfg[family.name]
            write_card(
                family.exported(staged),
                family.card,
                title=family.title,
                experiment=experiment_group(cfg),
                corpus=corpus_config(cfg).describe(),
                tokenizer=section.tokenizer,
                metrics=metrics,
                config={
                    family.name: OmegaConf.to_container(section, resolve=True),
                    "seed": cfg.seed,
                },
                base_model=str(section.get("init_from") or "") or None,
            )
        replace_dir(staged, out)
    return out
