"""The training stage's first step: the config sections it trains from, typed before Lightning
loads. Importing Lightning takes ~5 s of a stage's start; a bad value (a negative learning
rate, an unknown optimizer, a mask rate above 1) found after it cost a user seven seconds
to learn, and found here about two."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.backend import data_config
from llmworks.spec import names, settings
from llmworks.training.sharding import FSDPConfig


def keep_lightning_lines_single() -> None:
    """Lightning gives ``lightning.pytorch`` a handler of its own (and stops it propagating)
    only when it is imported before the root logger has one. Imported after ``run_stage``
    configured logging, each of its lines ("GPU available: ...") would print twice: through
    the ``lightning`` package's handler and through ours. So it gets the handler it would
    have given itself."""
    logger = logging.getLogger("lightning.pytorch")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False


def training_stage(cfg: DictConfig) -> dict[str, Any]:
    """``train@<family>`` (``llmworks.training.recipe.training_stage``), after typing the
    family's sections (``llmworks.families.<name>.settings``), ``data`` and ``fsdp``; the
    recipe reads the same sections again when it builds."""
    if cfg.family:  # the recipe names the families when none is given
        family_settings = settings(str(cfg.family), names(cfg))
        if family_settings is not None:
            family_settings.settings(cfg)
    data_config(cfg)
    typed(FSDPConfig, cfg.fsdp, "fsdp")
    keep_lightning_lines_single()
    from llmworks.training.recipe import training_stage as train

    return train(cfg)
