"""Full fine-tuning, the same for every family that offers a classifier: the task's examples
as batches (``TaskData``: tokenized by the family's framing, resumable, disjoint DDP ranks),
a ``LightningModule`` that trains any ``net(input_ids, attention_mask, token_type_ids) ->
logits`` with cross-entropy (``ClassifierModule``), and one on-disk format for the result
(``model.safetensors`` + ``config.json`` holding a ``ClassifierConfig``, the tokenizer and
the label names), which ``load_classifier`` rebuilds through the family.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from llmworks.data.samplers import (
    EvalSampler,
    TrainSampler,
    loader_generator,
    rank_and_world,
    resume_point,
)
from llmworks.errors import LlmworksError
from llmworks.finetune.task import Split
from llmworks.models.persistence import CONFIG_FILE, WEIGHTS_FILE
from llmworks.paths import TOKENIZER_FILE
from llmworks.training.metrics import ScoredModule, TokenMeans
from llmworks.training.optim import OptimConfig, configure_optimizer

Batch = dict[str, torch.Tensor]


class PairsUnsupported(LlmworksError):
    """The model cannot read two texts as one input (a pair task's fine-tuning): named in
    ``finetune.models``, that is an error; picked by default, the model is skipped."""


@dataclass
class ClassifierConfig:
    """What rebuilds a fine-tuned classifier: its family, the encoder's own config, the head."""

    family: str
    encoder: dict[str, Any]  # the family's model config (BertConfig, GPTConfig) as a dict
    labels: list[str]  # label id -> name
    pooling: str  # cls | last | mean: how the encoder's states become one vector
    max_len: int  # tokens read per example (framing included)
    dropout: float  # before the head
    frame: dict[str, Any] = field(default_factory=dict)  # the family's framing (GPT: eot)

    @property
    def n_labels(self) -> int:
        return len(self.labels)


HEAD_PREFIXES = ("classifier.", "score.")  # the heads the families' classifiers add


@dataclass
class Finetunable:
    """A family's classifier ready to fine-tune: the net (pretrained encoder + new head), the
    tokenizer that frames and truncates its input, where both came from."""

    net: nn.Module
    tokenizer: Tokenizer
    tokenizer_json: Path
    config: ClassifierConfig
    source: str  # the pretrained model: our model directory or a Hugging Face checkpoint
    base: Path | None = None  # a Hugging Face checkpoint's files (lineage, model card)


# ----------------------------------------------------------------------------- data


def encode_batch(tokenizer: Tokenizer, texts: Sequence[str], pairs: Sequence[str] | None) -> Batch:
    """Token ids, attention mask and segment ids of a batch, padded to its longest row (the
    tokenizer frames, truncates and pads: ``task_tokenizer``)."""
    inputs = list(texts) if pairs is None else list(zip(texts, pairs, strict=True))
    encs = tokenizer.encode_batch(inputs)
    return {
        "input_ids": torch.tensor([e.ids for e in encs], dtype=torch.long),
        "attention_mask": torch.tensor([e.attention_mask for e in encs], dtype=torch.bool),
        "token_type_ids": torch.tensor([e.type_ids for e in encs], dtype=torch.long),
    }


def task_tokenizer(tokenizer: Tokenizer, max_len: int, pad_token: str) -> Tokenizer:
    """``tokenizer`` truncating to ``max_len`` tokens (framing included; a pair is cut
    longest first) and padding each batch to its longest row with ``pad_token``."""
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise LlmworksError(f"the tokenizer has no {pad_token!r} token to pad batches with")
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return tokenizer


class Examples(Dataset):
    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[str, str | None, int]:
        s = self.split
        return s.texts[i], s.pairs[i] if s.pairs is not None else None, s.labels[i]


class Collate:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, rows: list[tuple[str, str | None, int]]) -> Batch:
        texts, pairs, labels = zip(*rows, strict=True)
        batch = encode_batch(self.tokenizer, texts, None if pairs[0] is None else pairs)
        return batch | {"labels": torch.tensor(labels, dtype=torch.long)}


class TaskData(L.LightningDataModule):
    """Train (seeded order per epoch, resumable mid-epoch), validation and test loaders of a
    task's splits."""

    def __init__(self, splits: dict[str, Split], tokenizer: Tokenizer, batch_size: int, seed: int):
        super().__init__()
        self.splits, self.batch_size, self.seed = splits, batch_size, seed
        self.collate = Collate(tokenizer)

    def train_dataloader(self) -> DataLoader:
        data = Examples(self.splits["train"])
        rank, world = rank_and_world(self.trainer)
        sampler = TrainSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        sampler.start = resume_point(self.trainer)[1] * self.batch_size
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            generator=loader_generator(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self.loader("validation")

    def loader(self, split: str) -> DataLoader:
        data = Examples(self.splits[split])
        rank, world = rank_and_world(self.trainer)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            sampler=EvalSampler(data, num_replicas=world, rank=rank),
            collate_fn=self.collate,
        )


# ----------------------------------------------------------------------------- training


class ClassificationScores(TokenMeans):
    """Mean cross-entropy and accuracy per example, over batches and DDP ranks."""

    def __init__(self):
        super().__init__("loss", "acc")

    def update(self, model: nn.Module, batch: Batch) -> None:  # type: ignore[override]
        logits = forward(model, batch)
        n = batch["labels"].numel()
        loss = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
        super().update(n, loss=loss, acc=(logits.argmax(-1) == batch["labels"]).sum())

    def results(self) -> dict[str, float]:
        s = self.compute()
        return {"loss": s["loss"], "acc": s["acc"], "examples": int(s["count"])}


def forward(net: nn.Module, batch: Batch) -> torch.Tensor:
    return net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


class ClassifierModule(ScoredModule):
    """Cross-entropy fine-tuning of ``net``, AdamW (or Muon + AdamW) with warmup and cosine
    decay over the run (``finetune.optim``); validation logs ``val_loss`` and ``val_acc``."""

    def __init__(self, net: nn.Module, optim: OptimConfig):
        super().__init__()
        self.model = net
        self.model.train()
        self.optim = optim
        self.scores = ClassificationScores()
        self.flops_per_batch: float | None = None  # read by Lightning's ThroughputMonitor

    def samples_in_batch(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0]

    def tokens_in_batch(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(forward(self.model, batch).float(), batch["labels"])
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        steps = int(self.trainer.estimated_stepping_batches)
        # the new head (BERT's `classifier`, GPT's `score`) is an output layer: AdamW under Muon
        head = tuple(
            p for name, p in self.model.named_parameters() if name.startswith(HEAD_PREFIXES)
        )
        return configure_optimizer(self.model, self.optim, steps, self.trainer, adamw_only=head)


@torch.no_grad()
def predict(net: nn.Module, data: TaskData, split: str) -> list[int]:
    """The label ids ``net`` predicts for a split, in its order."""
    net.eval()
    device = next(net.parameters()).device
    out: list[int] = []
    for batch in data.loader(split):
        batch = {k: v.to(device) for k, v in batch.items()}
        out += forward(net, batch).argmax(-1).tolist()
    return out


# ----------------------------------------------------------------------------- on disk

LABELS_FILE = "labels.json"


def save_classifier(net: nn.Module, config: ClassifierConfig, tokenizer_json: Path, out: Path):
    """The fine-tuned weights, their config, the tokenizer and the label names in ``out``."""
    import shutil

    from safetensors.torch import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(net, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    shutil.copyfile(tokenizer_json, out / TOKENIZER_FILE)
    (out / LABELS_FILE).write_text(json.dumps(config.labels, indent=2, ensure_ascii=False) + "\n")
    return out


def read_classifier_config(model_dir: Path) -> ClassifierConfig:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise LlmworksError(f"{model_dir} is not a fine-tuned classifier (no {CONFIG_FILE})")
    values = json.loads(path.read_text())
    if "family" not in values or "labels" not in values:
        raise LlmworksError(
            f"{model_dir} is not a fine-tuned classifier ({CONFIG_FILE} has no family/labels); "
            "the finetune stage writes them to models/finetuned/<family>"
        )
    return ClassifierConfig(**values)


def load_classifier(model_dir: str | Path) -> tuple[nn.Module, Tokenizer, ClassifierConfig]:
    """A fine-tuned classifier (eval mode), its framing tokenizer and config, rebuilt through
    its family's ``downstream`` module."""
    from safetensors.torch import load_model

    model_dir = Path(model_dir)
    config = read_classifier_config(model_dir)
    part = importlib.import_module(f"llmworks.families.{config.family}.downstream")
    net = part.build_classifier(config)
    load_model(net, str(model_dir / WEIGHTS_FILE))
    tokenizer = part.task_tokenizer(model_dir / TOKENIZER_FILE, config)
    return net.eval(), tokenizer, config
