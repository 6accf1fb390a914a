"""The ``finetune`` stage: every representation on one labelled task (``data/task``), scored
the same way on its test split.

Models (``finetune.models``; null: all there are): the baselines ``bow_counts`` and
``tfidf``, and every trained family with a ``downstream`` module
(``llmworks/families/<name>/downstream.py``), which offers

- ``probe_features(cfg, paths, device) -> Embedder``: fixed text vectors of the pretrained
  model, for a linear probe (``mode: probe``);
- optionally ``classifier(cfg, paths, task) -> Finetunable`` (the pretrained model with a new
  head; ``PairsUnsupported`` when it cannot read a pair task), ``build_classifier(config)``
  and ``task_tokenizer(tokenizer_json, config)`` (to load the saved classifier), for full
  fine-tuning by the one Lightning recipe (``mode: finetuned``), and ``export(net, config,
  tokenizer_json, out)`` for a Hugging Face export of the result.

The ``finetune`` section is typed in ``llmworks.finetune.settings`` before Lightning loads
(``llmworks.finetune.preflight``), with each family's ``finetune.<name>`` section where its
``settings`` module offers ``finetune_settings(cfg)``; its ``pair_problem(cfg, paths)`` says
why its classifier cannot read text pairs (or None), checked there too.

Each model's result is kept in ``runs/finetune/<model>/result.json`` under a fingerprint of
everything it depends on, and its fine-tuning run state (checkpoints, W&B id) beside it, so a
stage killed half way resumes: finished models are not redone, an interrupted fine-tuning
continues from its last checkpoint. Outputs are written only when every model is done:
``metrics/finetune.json``, ``metrics/finetune_predictions.json`` and
``models/finetuned/<family>/`` (moved into place at once). One W&B run per model
(``finetune@<model>``), grouped by experiment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from llmworks.errors import LlmworksError
from llmworks.evaluation.embedders import Embedder, bag_of_words_embedder
from llmworks.finetune.classifier import (
    ClassifierModule,
    PairsUnsupported,
    TaskData,
    predict,
    save_classifier,
)
from llmworks.finetune.probe import linear_probe, scores
from llmworks.finetune.settings import (
    BASELINES,
    MODES,
    FinetuneSettings,
    check_family_section,
    pairs_refusal,
    settings,
)
from llmworks.finetune.task import NoTask, Task, describe, load_task
from llmworks.io import replace_dir, scratch_dir, write_json
from llmworks.models.persistence import WEIGHTS_FILE
from llmworks.paths import Paths
from llmworks.spec import CardSpec, downstream, names
from llmworks.spec import settings as family_settings
from llmworks.tracking.lineage import log_lineage
from llmworks.tracking.runs import experiment_group, finish_wandb, log_metrics, start_run
from llmworks.training.fit import CHECKPOINTS, fingerprint, fit
from llmworks.training.model_card import write_card

log = logging.getLogger(__name__)

RESULT, CLASSIFIER, HF_DIR = "result.json", "classifier", "hf"
CARD = CardSpec(
    pipeline_tag="text-classification",
    library="transformers",
    how_to_load=(
        "from transformers import pipeline\n\n"
        'classify = pipeline("text-classification", model="{path}")\n'
        'print(classify("A paragraph to label."))'
    ),
)


@dataclass(frozen=True)
class Trainee:
    """One model of the stage as the shared ``fit`` sees it."""

    name: str
    monitor: str = "val_loss"
    divergence_hint: str = "lower finetune.optim.lr, or raise finetune.optim.warmup_steps"


# ----------------------------------------------------------------------------- the plan


def plan(cfg: DictConfig, s: FinetuneSettings, paths: Paths, task: Task) -> dict[str, list[str]]:
    """Each model and the modes it runs. Refused in one line before any work: an unknown
    model, a model not trained, a fine-tuning that cannot read the task's pairs (when named;
    picked by default such a model only runs its probe)."""
    offered = {n: downstream(n) for n in names(cfg)}
    known = list(BASELINES) + [n for n, part in offered.items() if part is not None]
    named = s.models is not None
    chosen = list(s.models) if named else list(BASELINES) + _trained(cfg, paths, offered)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise LlmworksError(f"finetune.models: {unknown} unknown; expected some of {known}")
    out: dict[str, list[str]] = {}
    for model in chosen:
        part = offered.get(model)
        if part is not None:  # the family's own finetune.<name> section
            check_family_section(cfg, model)
        modes = [m for m in s.modes if m == "probe" or _can_finetune(part)]
        if "finetuned" in modes and task.pairs:
            problem = getattr(family_settings(model), "pair_problem", None)
            reason = problem(cfg, paths) if problem is not None else None
            if reason and named:
                raise LlmworksError(pairs_refusal(model, task.name, reason))
            if reason:
                log.info("finetune: %s fine-tunes no pair task (%s); probe only", model, reason)
                modes.remove("finetuned")
        if modes:
            out[model] = modes
    if not out:
        raise LlmworksError(f"finetune: nothing to run for finetune.models={s.models}")
    return out


def _can_finetune(part: ModuleType | None) -> bool:
    return part is not None and hasattr(part, "classifier")


def _trained(cfg: DictConfig, paths: Paths, offered: dict[str, ModuleType | None]) -> list[str]:
    """Families with a downstream part whose model exists, ours or a published one."""
    out = []
    for name, part in offered.items():
        section = cfg.finetune.get(name) or {}
        if part is not None and (section.get("init_from") or paths.model(name).is_dir()):
            out.append(name)
        elif part is not None:
            log.info("finetune: %s skipped: %s does not exist", name, paths.model(name))
    return out


# ----------------------------------------------------------------------------- the stage


def finetune_stage(cfg: DictConfig) -> dict[str, Any]:
    """Probe and fine-tune every planned model; write metrics, predictions and the
    fine-tuned classifiers. Returns ``metrics/finetune.json``'s content (rank 0)."""
    s = settings(cfg)
    paths = Paths.from_config(cfg)
    try:
        task = load_task(paths)
    except NoTask as exc:  # the corpus could not make the default task: say so, go on
        log.warning("finetune: skipped: %s", exc)
        with scratch_dir(paths.finetuned.parent, paths.finetuned.name) as tmp:
            (tmp / paths.finetuned.name).mkdir()
            write_json(paths.finetune_predictions, {"skipped": str(exc)})
            write_json(paths.finetune_metrics, {"skipped": str(exc)})
            replace_dir(tmp / paths.finetuned.name, paths.finetuned)
        return {"skipped": str(exc)}
    todo = plan(cfg, s, paths, task)
    log.info("finetune: task %s (%s); %s", task.name, describe(task), todo)
    results: dict[str, dict[str, Any]] = {}
    for model, modes in todo.items():
        result = run_model(cfg, s, paths, task, model, modes)
        if result is None:  # a DDP rank other than 0: rank 0 writes
            continue
        results[model] = result
    if not results:
        return {}
    metrics = {"task": describe(task)} | {
        m: {mode: r[mode]["scores"] for mode in MODES if mode in r} for m, r in results.items()
    }
    with scratch_dir(paths.finetuned.parent, paths.finetuned.name) as tmp:
        staged = tmp / paths.finetuned.name
        staged.mkdir()
        for model in results:
            saved = paths.finetune_run(model) / CLASSIFIER
            if saved.is_dir():
                shutil.copytree(saved, staged / model)
        write_json(paths.finetune_predictions, predictions(task, results))
        write_json(paths.finetune_metrics, metrics)
        replace_dir(staged, paths.finetuned)
    for model in results:  # done: a rerun is a new run
        (paths.finetune_run(model) / RESULT).unlink(missing_ok=True)
    for model, modes in metrics.items():
        if model != "task":
            log.info("finetune: %-11s %s", model, "  ".join(
                f"{mode} {format_scores(scores)}" for mode, scores in modes.items()))  # fmt: skip
    return metrics


def format_scores(scores: dict[str, float]) -> str:
    """One short line of scores to three places: what a person reads in ``dvc repro``'s
    output, where a dict's sixteen-digit floats are noise."""
    return ", ".join(
        f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
        for name, value in scores.items()
    )


def predictions(task: Task, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every model's test predictions beside the true labels (the report's confusion
    matrix, and anyone's error analysis)."""
    return {
        "task": task.name,
        "labels": task.labels,
        "test_labels": task.splits["test"].labels,
        "models": {
            m: {mode: r[mode]["predictions"] for mode in MODES if mode in r}
            for m, r in results.items()
        },
    }


def model_fingerprint(cfg: DictConfig, paths: Paths, task: Task, model: str) -> str:
    """Everything one model's result depends on: the task, the stage's settings, the seed,
    the trainer, and the pretrained model's weights."""
    section = OmegaConf.to_container(cfg.finetune, resolve=True)
    section.pop("models", None)
    weights = paths.model(model) / WEIGHTS_FILE
    digest = _file_digest(weights) if weights.is_file() else None
    vocab = paths.model(model) / "vocab.json"
    return fingerprint(
        model, task.fingerprint, section, int(cfg.seed), digest,
        _file_digest(vocab) if vocab.is_file() else None,
        OmegaConf.to_container(cfg.trainer, resolve=True),
        OmegaConf.to_container(cfg[model], resolve=True) if model in cfg else None,
    )  # fmt: skip


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_model(
    cfg: DictConfig, s: FinetuneSettings, paths: Paths, task: Task, model: str, modes: list[str]
) -> dict[str, Any] | None:
    """One model's probe and fine-tuning, or its kept result when an interrupted run of the
    same fingerprint finished it already."""
    run_dir = paths.finetune_run(model)
    key = model_fingerprint(cfg, paths, task, model)
    kept = _kept(run_dir, key, modes)
    if kept is not None:
        log.info("finetune@%s: done in an earlier session, reusing %s", model, run_dir / RESULT)
        return kept
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    part = downstream(model) if model not in BASELINES else None
    result: dict[str, Any] = {}
    if "probe" in modes:
        embed = _features(cfg, s, paths, task, model, part)
        result["probe"] = linear_probe(embed, task, s.probe, int(cfg.seed))
        log.info("finetune@%s probe: %s", model, format_scores(result["probe"]["scores"]))
    wb = None
    try:
        if "finetuned" in modes:
            tuned = _finetune(cfg, s, paths, task, model, part, key)
            if tuned is None:
                return None
            result["finetuned"], wb = tuned
            scores = format_scores(result["finetuned"]["scores"])
            log.info("finetune@%s finetuned: %s", model, scores)
        else:
            wb = start_run(cfg, f"finetune@{model}")
        _log_wandb(wb, cfg, task, model, result)
    finally:
        finish_wandb(wb)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / RESULT, {"fingerprint": key, **result})
    return result


def _kept(run_dir: Path, key: str, modes: list[str]) -> dict[str, Any] | None:
    path = run_dir / RESULT
    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text())
    except ValueError:
        return None
    if kept.get("fingerprint") != key or any(m not in kept for m in modes):
        return None
    return {m: kept[m] for m in modes}


def _features(
    cfg: DictConfig, s: FinetuneSettings, paths: Paths, task: Task, model: str, part: Any
) -> Embedder:
    if model in BASELINES:
        train = task.splits["train"]
        texts = train.texts + (train.pairs or [])
        return bag_of_words_embedder(texts, model == "tfidf", s.probe.bow_max_features)
    device = torch.device(
        "cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu"
    )
    return part.probe_features(cfg, paths, device)


def _finetune(
    cfg: DictConfig, s: FinetuneSettings, paths: Paths, task: Task, model: str, part: Any,
    key: str,
) -> tuple[dict[str, Any], Any] | None:  # fmt: skip
    """Fine-tune the model's classifier with the shared recipe; score the weights of the
    lowest validation loss on test; save them (and their export) for the stage's output."""
    # the head's init and dropout draw the same whether or not the probe ran first
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    try:
        tuned = part.classifier(cfg, paths, task)
    except PairsUnsupported as exc:
        raise LlmworksError(str(exc)) from exc
    module = ClassifierModule(tuned.net, s.optim)
    data = TaskData(task.splits, tuned.tokenizer, s.batch_size, int(cfg.seed))
    run_dir = paths.finetune_run(model)
    result = fit(
        cfg, Trainee(model), module, data, run_dir, key, section="finetune",
        job=f"finetune@{model}",
    )  # fmt: skip
    if not result.trainer.is_global_zero:
        return None
    best = run_dir / CHECKPOINTS / "best.ckpt"
    if best.is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    net = module.model.cpu()
    predicted = predict(net, data, "test")
    got = {
        "scores": scores(task.splits["test"].labels, predicted, task.n_labels)
        | {"val_loss": result.metrics.get("val_loss"), "steps": int(result.trainer.global_step)},
        "predictions": predicted,
    }
    _save(cfg, s, task, model, part, tuned, net, got["scores"], run_dir / CLASSIFIER)
    result.run.mark_finished()
    return got, result.wandb


def _save(cfg, s, task, model, part, tuned, net, metrics, out: Path) -> None:
    """The classifier, its tokenizer and labels (``load_classifier``), and where the family
    has one its Hugging Face export with a model card, written aside and moved into place."""
    with scratch_dir(out.parent, out.name) as tmp:
        staged = save_classifier(net, tuned.config, tuned.tokenizer_json, tmp / out.name)
        if s.export and hasattr(part, "export"):
            try:
                part.export(net, tuned.config, tuned.tokenizer_json, staged / HF_DIR)
            except LlmworksError as exc:
                log.warning("finetune@%s: skipping the export: %s", model, exc)
        if (staged / HF_DIR).is_dir():  # the card describes the Hugging Face model
            write_card(
                staged / HF_DIR,
                CARD,
                title=f"{model} fine-tuned on {task.name}",
                experiment=experiment_group(cfg),
                corpus={"task": task.name, "labels": task.n_labels, "source": tuned.source},
                tokenizer=f"the pretrained model's ({tuned.tokenizer_json.name})",
                metrics=metrics,
                config={
                    "finetune": OmegaConf.to_container(cfg.finetune, resolve=True),
                    "seed": cfg.seed,
                },
                base_model=tuned.source if tuned.base is not None else None,
                results=f"Results on the test split of {task.name}",
                results_note="Every model of the stage is in `metrics/finetune.json`.",
            )
        replace_dir(staged, out)


def _log_wandb(wb: Any, cfg: DictConfig, task: Task, model: str, result: dict) -> None:
    if wb is None:
        return
    run = getattr(wb, "experiment", wb)
    flat = {f"{mode}/{k}": v for mode, r in result.items() for k, v in r["scores"].items()}
    log_metrics(run, flat | {"task/labels": task.n_labels}, prefix="final/")
    log_lineage(run, cfg, {"task": ("dataset", Path(cfg.paths.data) / "task")}, {}, flat)
