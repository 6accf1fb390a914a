"""The finetune stage's ``finetune`` section as typed settings, read without Lightning: the
stage types it (and each family's ``finetune.<name>``) before it loads Lightning, so a bad
value (an unknown mode, a GPT pooling we do not compute) fails in about two seconds instead
of seven, and the stage runs from the same objects."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from llmworks.config import typed
from llmworks.spec import names
from llmworks.spec import settings as family_settings
from llmworks.training.optim import OptimConfig

BASELINES = ("bow_counts", "tfidf")
MODES = ("probe", "finetuned")


@dataclass(frozen=True)
class ProbeConfig:
    """``finetune.probe``."""

    C: list[float]  # candidates for LogisticRegression's C, the best on validation is kept
    max_iter: int
    bow_max_features: int | None  # the baselines' vocabulary: the most frequent training words

    def __post_init__(self) -> None:
        if not self.C or any(c <= 0 for c in self.C):
            raise ValueError(f"C={self.C}: expected a non-empty list of positive values")


@dataclass(frozen=True)
class FinetuneSettings:
    """``cfg.finetune`` checked at start-up (the family sections and ``train`` are read
    where they are used)."""

    models: list[str] | None
    modes: list[str]
    max_len: int
    batch_size: int
    dropout: float
    probe: ProbeConfig
    optim: OptimConfig
    export: bool

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in MODES]
        if bad or not self.modes:
            raise ValueError(f"modes={self.modes}: expected a non-empty list of {list(MODES)}")
        if self.max_len < 2 or self.batch_size < 1:
            raise ValueError(f"max_len={self.max_len}, batch_size={self.batch_size}: too small")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a rate in [0, 1)")


def settings(cfg: DictConfig) -> FinetuneSettings:
    values = OmegaConf.to_container(cfg.finetune, resolve=True)
    for key in ("train", *names(cfg)):
        values.pop(key, None)
    probe = typed(ProbeConfig, values.pop("probe"), "finetune.probe")
    optim = typed(OptimConfig, values.pop("optim"), "finetune.optim")
    return typed(FinetuneSettings, values, "finetune", probe=probe, optim=optim)


def check_family_section(cfg: DictConfig, name: str) -> None:
    """Family ``name``'s own ``finetune.<name>`` section, where its settings module offers
    ``finetune_settings(cfg)`` (GPT's pooling, say)."""
    module = family_settings(name)
    if module is not None and hasattr(module, "finetune_settings"):
        module.finetune_settings(cfg)


def pairs_refusal(model: str, task: str, reason: str) -> str:
    """The one line for a model named in ``finetune.models`` that cannot fine-tune on a pair
    task (the preflight's and the stage's plan's)."""
    return (
        f"finetune.models has {model}, but task {task} has text pairs "
        f"(task.text_pair_field) and {reason}: fine-tune bert on it, or drop {model}"
    )
