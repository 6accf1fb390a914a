"""The training stage's first step: the config sections it trains from, typed before Lightning
loads. Importing Lightning takes ~5 s of a stage's start; a bad value (a negative learning
rate, an unknown optimizer, a mask rate above 1) found after it cost a user seven seconds
to learn, and found here about two."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.backend import data_config
from llmworks.errors import LlmworksError
from llmworks.paths import Paths
from llmworks.spec import names, settings
from llmworks.training.sharding import FSDPConfig, sharded, unshardable
from llmworks.training.trainer_config import check_trainer


def training_stage(cfg: DictConfig) -> dict[str, Any]:
    """``train@<family>`` (``llmworks.training.recipe.training_stage``), after typing the
    family's sections (``llmworks.families.<name>.settings``), ``data`` and ``fsdp``,
    checking the Trainer's arguments and hardware (``check_trainer``), and opening the files
    it trains from (its ``check_inputs``); the recipe reads them all again when it builds."""
    family_settings = None
    if cfg.family:  # the recipe names the families when none is given
        family_settings = settings(str(cfg.family), names(cfg))
        if family_settings is not None:
            family_settings.settings(cfg)
        check_data_section(cfg, str(cfg.family), getattr(family_settings, "DATA_SECTION", None))
        check_trainer(cfg.trainer, cfg[str(cfg.family)].train, f"{cfg.family}.train")
        if sharded(cfg.trainer) and not getattr(family_settings, "SHARDABLE", True):
            raise unshardable(f"the {cfg.family} family")
    data_config(cfg)
    typed(FSDPConfig, cfg.fsdp, "fsdp")
    if hasattr(family_settings, "check_inputs"):  # the config first, then the files
        family_settings.check_inputs(cfg, Paths.from_config(cfg))
    from llmworks.training.recipe import training_stage as train

    return train(cfg)


def check_data_section(cfg: DictConfig, name: str, expected: str | None = None) -> None:
    """``families.<name>.data_section``, the section ``dvc.yaml`` makes ``train@<name>``
    depend on besides its own: DVC takes a key missing from params.yaml for a deleted one and
    goes on, so a misspelt name would silently drop the dependency. ``expected`` is the one
    the family's code reads (its settings module's ``DATA_SECTION``): a family that reads
    shards through ``data`` but names itself would lose the dependency just as silently."""
    section = cfg.families[name].get("data_section")
    if expected is not None and section != expected:
        why = (
            f"the section the {name} family reads its token shards through"
            if expected == "data"
            else f"the {name} family reads no token shards, only its own section"
        )
        raise LlmworksError(
            f"families.{name}.data_section={section!r}: expected {expected!r}, {why} "
            f"(dvc.yaml makes train@{name} depend on it)"
        )
    if section not in ("data", name):
        raise LlmworksError(
            f"families.{name}.data_section={section!r}: expected 'data' (it trains from "
            f"token shards) or {name!r} (it reads none)"
        )
