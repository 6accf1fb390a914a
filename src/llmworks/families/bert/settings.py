"""The bert family's config sections as typed settings, read without Lightning: the training
stage types them before it loads Lightning, so a bad value (a mask rate above 1, unknown
positions) fails in about two seconds instead of seven, and ``module.build`` trains from the
same objects."""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.backend import data_config
from llmworks.data.shards import open_shards
from llmworks.domains import at_least
from llmworks.errors import LlmworksError
from llmworks.families.bert.model import BertConfig
from llmworks.models.hub import CONFIG, check_base_tokenizer, resolve
from llmworks.paths import Paths
from llmworks.training.optim import OptimConfig


@dataclass(frozen=True)
class MLMDataConfig:
    """The ``bert.data`` section."""

    max_seq_len: int  # sequence length trained on (<= the model's position table)
    packing: str  # docs | windows
    mask_rate: float
    eval_mask_rate: float  # validation and test: one rate for every recipe, so scores compare
    whole_word: bool
    batch_size: int
    num_workers: int
    pad_to_multiple_of: int | None
    val_seed: int  # validation masks are fixed by this seed, so runs compare
    max_val_batches: int | None  # a fixed prefix of the validation split (None: all of it)

    def __post_init__(self) -> None:
        at_least(1, max_seq_len=self.max_seq_len, batch_size=self.batch_size,
                 pad_to_multiple_of=self.pad_to_multiple_of,
                 max_val_batches=self.max_val_batches)  # fmt: skip
        at_least(0, num_workers=self.num_workers)
        for name, rate in (("mask_rate", self.mask_rate), ("eval_mask_rate", self.eval_mask_rate)):
            if not 0 < rate < 1:
                raise ValueError(f"{name}={rate}: expected a rate in (0, 1)")


@dataclass(frozen=True)
class BertSettings:
    """``cfg.bert`` typed. ``model`` lacks only ``vocab_size`` and ``pad_id`` (the
    tokenizer's, set by ``build``); it is None with ``bert.init_from``, whose checkpoint
    config replaces it."""

    model: BertConfig | None
    data: MLMDataConfig
    optim: OptimConfig


# The shared section its token shards are read through (``llmworks.data.backend``): the one
# that families.bert.data_section must name, for dvc.yaml to make train@bert depend on it.
DATA_SECTION = "data"


def settings(cfg: DictConfig) -> BertSettings:
    b = cfg.bert
    data = data_settings(cfg)
    model = None
    if not b.init_from:
        model = typed(BertConfig, b.model, "bert.model", vocab_size=None, pad_id=None)
        check_context(data, model)
    check_packing(data.packing, data_config(cfg).streams)
    return BertSettings(model, data, typed(OptimConfig, b.optim, "bert.optim"))


def check_inputs(cfg: DictConfig, paths: Paths) -> None:
    """What ``build`` opens first, its tokenizer, token shards, (with litdata) training
    chunks and (with ``init_from``) the checkpoint's vocabulary, checked before Lightning
    loads: missing, damaged or mismatched files fail in seconds, with the fix."""
    tokenizer = str(cfg.bert.tokenizer)
    tok_json = paths.trained_tokenizer(tokenizer)
    open_shards(paths.tokens(tokenizer), tok_json)
    data_config(cfg).check_stream(paths.tokens(tokenizer), tokenizer)
    if cfg.bert.init_from:  # the checkpoint's embedding rows are its own tokenizer's ids
        where = f"bert.init_from={cfg.bert.init_from}"
        check_base_tokenizer(str(cfg.bert.init_from), where, tok_json, tokenizer)


def data_settings(cfg: DictConfig) -> MLMDataConfig:
    """``bert.data`` alone: what the evaluate stage batches the test split by."""
    return typed(MLMDataConfig, cfg.bert.data, "bert.data")


def check_packing(packing: str, streams: bool) -> None:
    """A litdata stream (``data.backend=litdata``) is one token stream: it packs documents."""
    if streams and packing != "docs":
        raise LlmworksError(
            f"bert.data.packing={packing}: data.backend=litdata packs the token stream "
            "([CLS] ... [SEP] across documents); use bert.data.packing=docs, or "
            "data.backend=memmap"
        )


def check_context(data: MLMDataConfig, model: BertConfig) -> None:
    """The sequences trained on fit the model's position table."""
    if data.max_seq_len > model.max_seq_len:
        raise LlmworksError(
            f"bert.data.max_seq_len={data.max_seq_len} exceeds the model's "
            f"position table bert.model.max_seq_len={model.max_seq_len}"
        )


def pair_problem(cfg: DictConfig, paths: Paths) -> str | None:
    """Why BERT's classifier cannot read text pairs, or None: it needs two segment
    embeddings. Read from the model's ``config.json`` (ours, or ``finetune.bert.init_from``'s),
    so the finetune stage's preflight refuses a pair task before Lightning loads."""
    source = cfg.finetune.bert.init_from
    if source:
        config = resolve(str(source), "finetune.bert.init_from") / CONFIG
        if not config.is_file():
            return None  # not a checkpoint: loading it says so
        segments = json.loads(config.read_text()).get("type_vocab_size", 2)  # BertConfig's
    else:
        config = paths.model("bert") / CONFIG
        segments = json.loads(config.read_text())["type_vocab_size"] if config.is_file() else 2
    if segments >= 2:
        return None
    return (
        f"bert ({source or paths.model('bert')}) has type_vocab_size={segments}: one segment, "
        "so it cannot tell two texts apart"
    )
