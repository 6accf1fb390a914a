"""The finetune stage's first step: its ``finetune`` section, the named models and each
family's ``finetune.<name>`` typed before Lightning loads (as ``llmworks.training.preflight``
does for the training stage): a misspelt model or an unknown pooling costs a user about two
seconds to learn, not seven."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.finetune.settings import BASELINES, check_family_section, settings
from llmworks.spec import names
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
    from llmworks.finetune.stage import finetune_stage as run

    return run(cfg)
