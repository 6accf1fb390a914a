"""The gpt family's config sections as typed settings, read without Lightning: the training
stage types them before it loads Lightning, so a bad value (a negative ``gpt.optim.lr``, an
unknown ``gpt.model.mlp``) fails in about two seconds instead of seven, and ``module.build``
trains from the same objects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.backend import data_config
from llmworks.data.shards import open_shards
from llmworks.domains import at_least
from llmworks.errors import LlmworksError
from llmworks.families.gpt.model import GPTConfig
from llmworks.models.hub import check_base_tokenizer
from llmworks.paths import Paths
from llmworks.training.optim import OptimConfig


@dataclass(frozen=True)
class WindowDataConfig:
    """The ``gpt.data`` section."""

    batch_size: int  # windows per batch and process
    val_windows: int  # fixed validation windows, evenly spread over the split
    num_workers: int  # DataLoader worker processes
    seq_len: int | None  # tokens per window; None: the model's block_size (its longest)

    def __post_init__(self) -> None:
        at_least(1, batch_size=self.batch_size, val_windows=self.val_windows,
                 seq_len=self.seq_len)  # fmt: skip
        at_least(0, num_workers=self.num_workers)

    def window(self, block_size: int) -> int:
        """The window length for a model reading at most ``block_size`` tokens."""
        return min(self.seq_len or block_size, block_size)


@dataclass(frozen=True)
class GPTSettings:
    """``cfg.gpt`` typed. ``model`` lacks only ``vocab_size`` (the tokenizer's, set by
    ``build``); it is None with ``gpt.init_from``, whose checkpoint config replaces it."""

    model: GPTConfig | None
    data: WindowDataConfig
    optim: OptimConfig


# The shared section its token shards are read through (``llmworks.data.backend``): the one
# that families.gpt.data_section must name, for dvc.yaml to make train@gpt depend on it.
DATA_SECTION = "data"


def settings(cfg: DictConfig) -> GPTSettings:
    g = cfg.gpt
    model = None if g.init_from else typed(GPTConfig, g.model, "gpt.model", vocab_size=None)
    return GPTSettings(model, data_settings(cfg), typed(OptimConfig, g.optim, "gpt.optim"))


def check_inputs(cfg: DictConfig, paths: Paths) -> None:
    """What ``build`` opens first, its tokenizer, token shards, (with litdata) training
    chunks and (with ``init_from``) the checkpoint's vocabulary, checked before Lightning
    loads: missing, damaged or mismatched files fail in seconds, with the fix."""
    tokenizer = str(cfg.gpt.tokenizer)
    tok_json = paths.trained_tokenizer(tokenizer)
    shards = open_shards(paths.tokens(tokenizer), tok_json)
    data_config(cfg).check_stream(shards.root, tokenizer)
    if cfg.gpt.init_from:  # the checkpoint's embedding rows are its own tokenizer's ids
        where = f"gpt.init_from={cfg.gpt.init_from}"
        check_base_tokenizer(str(cfg.gpt.init_from), where, tok_json, tokenizer)
    s = settings(cfg)
    if s.model is not None:  # an imported checkpoint's window is known once it loads
        window = s.data.window(s.model.block_size)
        streamed = data_config(cfg).streams  # then the train split is read as one stream
        for split in ("validation",) if streamed else ("train", "validation"):
            check_windows(shards.root, split, len(shards.split(split).tokens), window)


def check_windows(root: Path, split: str, tokens: int, window: int) -> None:
    """``split`` holds at least one window (``window + 1`` tokens: inputs and targets)."""
    if (tokens - 1) // window < 1:
        raise LlmworksError(
            f"{root}: the {split} split has {tokens} tokens, fewer than block_size + 1 = "
            f"{window + 1}; lower gpt.data.seq_len (or gpt.model.block_size) or use a larger corpus"
        )


def data_settings(cfg: DictConfig) -> WindowDataConfig:
    """``gpt.data`` alone: what the evaluate stage cuts the test split by."""
    return typed(WindowDataConfig, cfg.gpt.data, "gpt.data")


POOLINGS = ("last", "mean")  # the fine-tuned classifier's one state per text (downstream.py)


def finetune_settings(cfg: DictConfig) -> None:
    """``finetune.gpt``, checked before the finetune stage loads Lightning."""
    check_pooling(cfg.finetune.gpt.pooling)


def check_pooling(pooling: str) -> None:
    """One of ``POOLINGS``; also checked where a saved classifier's config is loaded."""
    if pooling not in POOLINGS:
        raise LlmworksError(f"finetune.gpt.pooling={pooling!r}: expected one of {POOLINGS}")


def pair_problem(cfg: DictConfig, paths: Paths) -> str | None:
    """Why GPT's classifier cannot read text pairs: a causal LM here has no segment
    embedding. Here, without torch, for the finetune stage's preflight."""
    return "gpt reads one text (it has no segment embedding to tell two apart)"
