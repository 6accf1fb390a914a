"""BERT's part of the finetune stage: its mean-pooled states as fixed features for a linear
probe, and a classifier on its ``[CLS]`` state to fine-tune whole, as the BERT paper does.

The classifier is what Hugging Face's ``*ForSequenceClassification`` computes, so that the
export is the same function: ``BertForSequenceClassification`` and its pre-LN twin
``MegatronBertForSequenceClassification`` read ``tanh(pooler([CLS]))`` into a linear layer;
``RoFormerForSequenceClassification`` (rotary positions) reads ``gelu(dense([CLS]))``. The
pooler of our pretrained model (untrained: there is no next-sentence objective here, or the
published checkpoint's) is that dense layer. A text pair is framed ``[CLS] a [SEP] b [SEP]``
with segment ids 0 and 1, which the tokenizer's post-processor writes.

The pretrained model is ours (``models/bert``) or, with ``finetune.bert.init_from``, a
published checkpoint (a hub id or a directory) with its own tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tokenizers import Tokenizer
from torch import nn

from llmworks.errors import LlmworksError
from llmworks.evaluation.embedders import Embedder
from llmworks.evaluation.trained import model_dir
from llmworks.families.bert.hf import _hf_config, hf_architecture, hf_state_dict, hf_tokenizer
from llmworks.families.bert.model import Bert, BertConfig
from llmworks.families.bert.settings import pair_problem
from llmworks.finetune.classifier import (
    ClassifierConfig,
    Finetunable,
    PairsUnsupported,
)
from llmworks.finetune.classifier import (
    task_tokenizer as framing_tokenizer,
)
from llmworks.finetune.probe import frozen_states
from llmworks.finetune.task import Task
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer

PAD = "[PAD]"
# the head's activation per exported architecture (what HF's head computes on [CLS])
HEAD_ACT = {"bert": "tanh", "megatron-bert": "tanh", "roformer": "gelu"}
SEQUENCE_CLASSES = {
    "bert": "BertForSequenceClassification",
    "megatron-bert": "MegatronBertForSequenceClassification",
    "roformer": "RoFormerForSequenceClassification",
}


class BertClassifier(nn.Module):
    """The encoder, ``act(pooler(h[CLS]))``, dropout and a linear layer to the labels."""

    def __init__(self, encoder: Bert, n_labels: int, dropout: float, act: str):
        super().__init__()
        self.encoder = encoder
        self.encoder.head = nn.Identity()  # the MLM head has no part in classification
        self.act = act
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.d_model, n_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)  # BERT's init
        nn.init.zeros_(self.classifier.bias)

    def forward(
        self, idx: torch.Tensor, padding_mask: torch.Tensor, token_type: torch.Tensor
    ) -> torch.Tensor:
        h = self.encoder.encode(idx, padding_mask, token_type)
        pooled = self.encoder.pooler(self.drop(h[:, 0]) if self.act == "gelu" else h[:, 0])
        pooled = torch.tanh(pooled) if self.act == "tanh" else F.gelu(pooled)
        return self.classifier(self.drop(pooled))


def pretrained(cfg: DictConfig, paths: Paths) -> tuple[Bert, Path, str, Path | None]:
    """The pretrained BERT (train mode), its tokenizer file, a name for it, and the published
    checkpoint's directory when it is one."""
    source = cfg.finetune.bert.init_from
    if source:
        from llmworks.families.bert.hf import from_hf

        where = f"finetune.bert.init_from={source}"
        model, base = from_hf(str(source), where=where)
        tok = base / TOKENIZER_FILE
        if not tok.is_file():
            raise LlmworksError(f"{where}: no {TOKENIZER_FILE} in {base}")
        return model.train(), tok, str(source), base
    path = model_dir(paths, "bert")
    return Bert.load(path).train(), path / TOKENIZER_FILE, str(path), None


def probe_features(cfg: DictConfig, paths: Paths, device: torch.device) -> Embedder:
    """Mean-pooled final states (``[CLS]``, ``[SEP]`` and padding left out): an MLM trains
    no sequence vector, and the mean is the usual frozen baseline."""
    model, tok_json, _, _ = pretrained(cfg, paths)
    return frozen_states(model, tok_json, model.config.max_seq_len, cfg, device)


def classifier(cfg: DictConfig, paths: Paths, task: Task) -> Finetunable:
    """The pretrained encoder with a new head for ``task``'s labels."""
    model, tok_json, source, base = pretrained(cfg, paths)
    if task.pairs and model.config.type_vocab_size < 2:
        raise PairsUnsupported(pair_problem(cfg, paths) or "bert has one segment")
    arch = _architecture(model.config)
    config = ClassifierConfig(
        family="bert",
        encoder=asdict(model.config),
        labels=list(task.labels),
        pooling="cls",
        max_len=min(model.config.max_seq_len, int(cfg.finetune.max_len)),
        dropout=float(cfg.finetune.dropout),
        frame={"act": HEAD_ACT[arch], "arch": arch},
    )
    net = BertClassifier(model, config.n_labels, config.dropout, HEAD_ACT[arch])
    return Finetunable(net, task_tokenizer(tok_json, config), tok_json, config, source, base)


def build_classifier(config: ClassifierConfig) -> BertClassifier:
    """An untrained classifier of ``config``'s shape (``load_classifier`` fills its weights)."""
    encoder = Bert(BertConfig(**config.encoder))
    return BertClassifier(encoder, config.n_labels, config.dropout, config.frame["act"])


def task_tokenizer(tokenizer_json: Path, config: ClassifierConfig) -> Tokenizer:
    """The WordPiece tokenizer, which frames ``[CLS] a [SEP] (b [SEP])``, cut to ``max_len``."""
    tok = read_tokenizer(tokenizer_json)
    if tok.token_to_id("[CLS]") is None or tok.post_processor is None:
        raise LlmworksError(
            f"{tokenizer_json} does not frame [CLS] ... [SEP]; BERT needs its WordPiece tokenizer"
        )
    return framing_tokenizer(tok, config.max_len, PAD)


def _architecture(cfg: BertConfig) -> str:
    """The Hugging Face architecture the classifier matches; a model without one gets the
    ``[CLS]``-pooler head of BERT (and no export)."""
    try:
        return hf_architecture(cfg)
    except LlmworksError:
        return "bert"


# ----------------------------------------------------------------------------- export


def to_hf_classifier(net: BertClassifier, config: ClassifierConfig):
    """The equivalent ``transformers`` ``*ForSequenceClassification`` (float32, eval mode)
    with ``id2label``/``label2id``; refuses an encoder without a counterpart."""
    import transformers as tf

    enc = net.encoder
    arch = hf_architecture(enc.config)
    hf_cfg = _hf_config(enc.config, arch)
    hf_cfg.num_labels = config.n_labels
    hf_cfg.id2label = dict(enumerate(config.labels))
    hf_cfg.label2id = {name: i for i, name in enumerate(config.labels)}
    hf_cfg.classifier_dropout = config.dropout
    hf = getattr(tf, SEQUENCE_CLASSES[arch])(hf_cfg)
    state = {k: v for k, v in _encoder_state(enc).items() if not k.startswith("cls.")}
    head = {
        "pooler": (net.encoder.pooler.weight, net.encoder.pooler.bias),
        "classifier": (net.classifier.weight, net.classifier.bias),
    }
    names = (
        {"pooler": "classifier.dense", "classifier": "classifier.out_proj"}
        if arch == "roformer"
        else {"pooler": "bert.pooler.dense", "classifier": "classifier"}
    )
    for part, (weight, bias) in head.items():
        state[f"{names[part]}.weight"] = weight.detach().float().cpu()
        state[f"{names[part]}.bias"] = bias.detach().float().cpu()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("embed_positions.weight", "position_ids"))]
    if missing or unexpected:
        raise RuntimeError(
            f"classifier mapping incomplete: missing={missing} unexpected={unexpected}"
        )
    return hf.float().eval()


def _encoder_state(encoder: Bert) -> dict[str, torch.Tensor]:
    """``hf_state_dict`` of the encoder (it expects the MLM head, which the classifier
    dropped: a zero stand-in fills its place, then its tensors are left out)."""
    from llmworks.families.bert.model import MLMHead

    head = encoder.head
    encoder.head = MLMHead(encoder.config)
    try:
        return hf_state_dict(encoder)
    finally:
        encoder.head = head


def export(net: BertClassifier, config: ClassifierConfig, tokenizer_json: Path, out: Path) -> Path:
    """``save_pretrained`` of the classifier and its tokenizer into ``out``: loadable with
    ``AutoModelForSequenceClassification`` and ``pipeline("text-classification", out)``."""
    tok = hf_tokenizer(tokenizer_json, config.max_len)
    hf = to_hf_classifier(net, config)
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    # the framing tokenizer's cut: pipeline() then truncates as the stage does
    tc = out / "tokenizer_config.json"
    values = json.loads(tc.read_text())
    values["model_max_length"] = config.max_len
    tc.write_text(json.dumps(values, indent=2) + "\n")
    return out
