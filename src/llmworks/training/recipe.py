"""The one training-stage recipe every model family runs (``train_<family>``), and the spec a
family fills in to run it -- what torchtitan calls a ``TrainSpec``.

seed -> paths -> the family builds its data and ``LightningModule`` -> the shared ``fit``
(trainer, callbacks, loggers, checkpoints, resume) -> on rank 0: final weights, the
tokenizer beside them and the family's exports, staged and moved into ``models/<family>/`` at
once; ``metrics/<family>.json`` and the ``dvc plots`` CSVs, written atomically; the final
numbers in W&B.
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed
from llmworks.corpus import describe
from llmworks.errors import LlmworksError
from llmworks.export.model_card import CardSpec, write_card
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.paths import Paths
from llmworks.tracking import experiment_group, finish_wandb, log_lineage
from llmworks.training.fit import FitResult, fit
from llmworks.training.logs import write_plots
from llmworks.training.sharding import FSDPConfig, full_model

log = logging.getLogger(__name__)

# what ThroughputMonitor logs on rank 0: tokens (the modules' ``tokens_in_batch``) per second
# (a rolling window), and the running totals of tokens and seconds it divides
TOKENS_PER_S_PER_DEVICE = "train/device/items_per_sec"
TOKENS, SECONDS = "train/lengths", "train/time"


class ExportUnsupported(LlmworksError):
    """The trained architecture has no equivalent in the export format; the stage warns and
    goes on without that export (the model itself is saved)."""


def require_exportable(check: Callable[[Any], object], config: Any) -> None:
    """Run an exporter's architecture check on a model config; the ``LlmworksError`` that
    names the missing counterpart becomes ``ExportUnsupported`` (warn, skip the export)."""
    try:
        check(config)
    except LlmworksError as exc:
        raise ExportUnsupported(str(exc)) from exc


@dataclass(frozen=True)
class Built:
    """What a family's builder hands the recipe."""

    module: L.LightningModule  # holds the model as ``module.model`` (with ``save(dir)``)
    data: L.LightningDataModule
    data_id: str  # identifies the training data: part of the run's fingerprint
    # files copied next to the weights (name: source), so the model directory is complete
    files: Mapping[str, Path] = field(default_factory=dict)
    # what it trains on, as W&B lineage: {artifact name: (type, path)}
    inputs: Mapping[str, tuple[str, Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """Everything the pipeline needs to know about one model family.

    ``name`` is at once the config section (``cfg.<name>``), the stage (``train_<name>``), the
    model directory (``models/<name>``) and the metrics file (``metrics/<name>.json``).
    """

    name: str
    title: str  # the report's heading for it
    build: Callable[[DictConfig, Paths], Built]
    monitor: str  # validation metric, lower is better: picks best.ckpt
    metrics: tuple[str, ...]  # final validation metrics kept in metrics/<name>.json
    plots: Mapping[str, Mapping[str, str]]  # {"train": {column: logged name}, "val": {...}}
    # writes the family's exports into the model directory (ExportUnsupported: skipped)
    export: Callable[[Built, Path], None] | None = None
    # the evaluate stage's part for this family (see llmworks.evaluation.run.Evaluation)
    evaluate: Callable[[Any], None] | None = None
    # the model card of its export (README.md in the export, else in the model directory)
    card: CardSpec | None = None


def require_tokenizer(paths: Paths, name: str) -> Path:
    """A trained tokenizer's ``tokenizer.json``, or the one message that says how to get it."""
    path = paths.tokenizer(name)
    if not path.is_file():
        raise LlmworksError(f"{path} not found; train it first (dvc repro train_tokenizer@{name})")
    return path


def training_stage(family: Family, cfg: DictConfig) -> dict[str, Any]:
    """The ``train_<family>`` stage. Returns the metrics written to ``metrics/<family>.json``
    (on rank 0; the final validation metrics on other ranks)."""
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    paths = Paths.from_config(cfg)
    built = family.build(cfg, paths)
    built.module.fsdp = typed(FSDPConfig, cfg.fsdp, "fsdp")  # used under trainer=fsdp only
    result = fit(
        cfg,
        family.name,
        built.module,
        built.data,
        paths.run(family.name),
        family.monitor,
        built.data_id,
    )
    try:
        # sharded (trainer=fsdp): every rank takes part in gathering the full weights
        full = full_model(built.module.model, result.trainer.is_global_zero)
        if not result.trainer.is_global_zero:
            return result.metrics
        built.module.model = full
        metrics = final_metrics(family, result)
        save_artifacts(family, built, paths.model(family.name), cfg, metrics)
        write_json(paths.metrics_json(family.name), metrics)
        write_plots(
            result.log,
            {s: paths.plot_csv(family.name, s) for s in family.plots},
            family.plots,
        )
        if result.wandb is not None:
            result.wandb.log_metrics({f"final/{k}": v for k, v in metrics.items() if v is not None})
            model_dir = paths.model(family.name)
            exported = model_dir / "hf" if (model_dir / "hf").is_dir() else model_dir
            log_lineage(
                result.wandb.experiment,
                cfg,
                dict(built.inputs),
                {f"model-{family.name}": ("model", exported)},
                {k: v for k, v in metrics.items() if v is not None},
            )
        result.run.mark_finished()
    finally:
        finish_wandb(result.wandb)
    log.info("train_%s: %s", family.name, {k: v for k, v in metrics.items() if v is not None})
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
            f"{trainer.global_step} steps; lower {family.name}.optim.lr or raise warmup"
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
                family.export(built, staged)
            except ExportUnsupported as exc:
                log.warning("train_%s: skipping the export: %s", family.name, exc)
        if family.card is not None:
            card_dir = staged / "hf" if (staged / "hf").is_dir() else staged
            section = cfg[family.name]
            write_card(
                card_dir,
                family.card,
                title=family.title,
                experiment=experiment_group(cfg),
                corpus=describe(cfg.corpus),
                tokenizer=section.tokenizer,
                metrics=metrics,
                config={
                    family.name: OmegaConf.to_container(section, resolve=True),
                    "seed": cfg.seed,
                },
            )
        replace_dir(staged, out)
    return out
