"""GPT's part of the finetune stage: its mean-pooled states as fixed features for a linear
probe, and a classifier to fine-tune whole.

The classifier reads the state of the last token by default (``finetune.gpt.pooling: last``),
the end-of-text token appended to every text, as GPT-1 fine-tuned and as Hugging Face's
``*ForSequenceClassification`` of causal LMs pool: in a causal model only the last position
has read the whole text, while a mean mixes in states that saw only a prefix. ``mean`` pools
every real token instead (the probe's vector, which needs no training to mean something).
The head is one linear layer without bias, Hugging Face's ``score``. A causal LM here has no
segment embedding, so it takes single texts only: a pair task's fine-tuning refuses it (its
linear probe still compares the two texts' vectors).

The pretrained model is ours (``models/gpt``) or, with ``finetune.gpt.init_from``, a
published checkpoint (a hub id or a directory) with its own tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing
from torch import nn

from llmworks.errors import LlmworksError
from llmworks.evaluation.embedders import Embedder
from llmworks.evaluation.trained import model_dir
from llmworks.families.gpt.hf import EOT, PAD
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.families.gpt.settings import check_pooling, pair_problem
from llmworks.finetune.classifier import ClassifierConfig, Finetunable, PairsUnsupported
from llmworks.finetune.classifier import task_tokenizer as framing_tokenizer
from llmworks.finetune.probe import frozen_states
from llmworks.finetune.task import Task
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer


class GPTClassifier(nn.Module):
    """The decoder, one state per text (the last real token's, or the mean of all), dropout
    and a linear layer to the labels."""

    def __init__(self, decoder: GPT, n_labels: int, dropout: float, pooling: str):
        super().__init__()
        check_pooling(pooling)
        self.decoder = decoder
        self.decoder.lm_head = nn.Identity()  # the LM head has no part in classification
        self.pooling = pooling
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(decoder.config.d_model, n_labels, bias=False)
        nn.init.normal_(self.score.weight, std=0.02)

    def forward(
        self, idx: torch.Tensor, padding_mask: torch.Tensor, token_type: torch.Tensor
    ) -> torch.Tensor:
        h = self.decoder.encode(idx, padding_mask=padding_mask)
        if self.pooling == "last":  # right padding: the last real token of each row
            last = padding_mask.sum(1) - 1
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            w = padding_mask.to(h.dtype)[..., None]
            pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.score(self.drop(pooled))


def pretrained(cfg: DictConfig, paths: Paths) -> tuple[GPT, Path, str, str]:
    """The pretrained GPT (train mode), its tokenizer file, a name for it and its
    end-of-text token."""
    g = cfg.finetune.gpt
    if g.init_from:
        from llmworks.families.gpt.hf import from_hf
        from llmworks.models.hub import read_config

        where = f"finetune.gpt.init_from={g.init_from}"
        model, base = from_hf(str(g.init_from), where=where)
        tok = base / TOKENIZER_FILE
        if not tok.is_file():
            raise LlmworksError(f"{where}: no {TOKENIZER_FILE} in {base}")
        eos = getattr(read_config(base), "eos_token_id", None)
        eos = eos[0] if isinstance(eos, list) else eos
        eot = g.eot_token or (read_tokenizer(tok).id_to_token(eos) if eos else None)
        if eot is None:
            raise LlmworksError(
                f"{where}: the checkpoint names no eos token; set finetune.gpt.eot_token"
            )
        return model.train(), tok, str(g.init_from), str(eot)
    path = model_dir(paths, "gpt")
    eot = g.eot_token or cfg.tokenizers[str(cfg.gpt.tokenizer)].get("eot_token") or EOT
    return GPT.load(path).train(), path / TOKENIZER_FILE, str(path), str(eot)


def probe_features(cfg: DictConfig, paths: Paths, device: torch.device) -> Embedder:
    """Mean-pooled final states over each text's tokens: fixed, as a probe needs."""
    model, tok_json, _, _ = pretrained(cfg, paths)
    return frozen_states(model, tok_json, model.config.block_size, cfg, device)


def classifier(cfg: DictConfig, paths: Paths, task: Task) -> Finetunable:
    """The pretrained decoder with a new head for ``task``'s labels."""
    model, tok_json, source, eot = pretrained(cfg, paths)
    if task.pairs:
        raise PairsUnsupported(f"{pair_problem(cfg, paths)}; task {task.name} has text pairs")
    from dataclasses import asdict

    pooling = str(cfg.finetune.gpt.pooling)
    config = ClassifierConfig(
        family="gpt",
        encoder=asdict(model.config),
        labels=list(task.labels),
        pooling=pooling,
        max_len=min(model.config.block_size, int(cfg.finetune.max_len)),
        dropout=float(cfg.finetune.dropout),
        frame={"eot": eot},
    )
    net = GPTClassifier(model, config.n_labels, config.dropout, pooling)
    return Finetunable(net, task_tokenizer(tok_json, config), tok_json, config, source, None)


def build_classifier(config: ClassifierConfig) -> GPTClassifier:
    """An untrained classifier of ``config``'s shape (``load_classifier`` fills its weights)."""
    return GPTClassifier(GPT(GPTConfig(**config.encoder)), config.n_labels, config.dropout,
                         config.pooling)  # fmt: skip


def task_tokenizer(tokenizer_json: Path, config: ClassifierConfig) -> Tokenizer:
    """The GPT tokenizer appending the end-of-text token to each text, cut to ``max_len``
    (the end-of-text token kept), padded on the right."""
    tok = read_tokenizer(tokenizer_json)
    eot = config.frame["eot"]
    eot_id = tok.token_to_id(eot)
    if eot_id is None:
        raise LlmworksError(f"{tokenizer_json} has no end-of-text token {eot!r}")
    tok.post_processor = TemplateProcessing(single=f"$A {eot}", special_tokens=[(eot, eot_id)])
    pad = PAD if tok.token_to_id(PAD) is not None else eot
    return framing_tokenizer(tok, config.max_len, pad)
