"""The finetune stage's first step: its ``finetune`` section, the named models and each
family's ``finetune.<name>`` typed before Lightning loads (as ``llmworks.training.preflight``
does for the training stage), with the Trainer's arguments, and a model named to fine-tune
on a pair task that reads one text: a misspelt model, an unknown pooling or a GPT named for
text pairs costs a user about two seconds to learn, not seven."""

from __future__ import annotations

import json
from typing import Any

from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.finetune.settings import BASELINES, check_family_section, pairs_refusal, settings
from llmworks.paths import Paths
from llmworks.spec import names
from llmworks.spec import settings as family_settings
from llmworks.training.trainer_config import check_trainer


def finetune_stage(cfg: DictConfig) -> dict[str, Any]:
    """``llmworks.finetune.stage.finetune_stage``, after typing what it runs from."""
    s = settings(cfg)
    families = names(cfg)
    chosen = families if s.models is None else list(s.models)
    unknown = [m for m in chosen if m not in BASELINES and m not in families]
    if unknown:
        raise LlmworksError(
            f"finetune.models: {unknown} unknown; expected some of {[*BASELINES, *families]}"
        )
    for name in chosen:
        if name in families:
            check_family_section(cfg, name)
    check_trainer(cfg.trainer, cfg.finetune.train, "finetune.train")
    if s.models is not None and "finetuned" in s.modes:
        check_pairs(cfg, [m for m in chosen if m in families])
    from llmworks.finetune.stage import finetune_stage as run

    return run(cfg)


def check_pairs(cfg: DictConfig, models: list[str]) -> None:
    """A model named to fine-tune on a pair task must read two texts (the family's
    ``pair_problem``, in its settings module). The prepared task's summary says whether it
    has pairs; without one, the stage says to prepare it."""
    paths = Paths.from_config(cfg)
    if not paths.task_summary.is_file():
        return
    summary = json.loads(paths.task_summary.read_text())
    if not summary.get("pairs"):
        return
    for model in models:
        problem = getattr(family_settings(model), "pair_problem", None)
        reason = problem(cfg, paths) if problem is not None else None
        if reason:
            raise LlmworksError(pairs_refusal(model, str(summary.get("task")), reason))
