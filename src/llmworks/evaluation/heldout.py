"""Held-out test-split scores of the trained Transformers, computed the way their validation
scores are during training (GPT: non-overlapping windows of its block size; BERT: masks drawn
with the validation seed ``bert.data.val_seed``), so test and validation figures compare."""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import islice

import torch
from torch.utils.data import DataLoader, Dataset

from llmworks.data.mlm import IGNORE_INDEX
from llmworks.models.bert import Bert
from llmworks.models.gpt import GPT


@torch.no_grad()
def causal_lm_metrics(
    model: GPT,
    windows: Dataset,
    batch_size: int,
    bytes_per_token: float | None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Mean next-token loss over ``(x, y)`` windows, its perplexity and bits per byte.

    Bits per byte divides by the split's bytes per token, which makes models with different
    tokenizers comparable (a loss per token is not)."""
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False)
    total, count = 0.0, 0
    for x, y in _limit(loader, max_batches):
        _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
    loss = total / max(count, 1)
    metrics = {"test_loss": loss, "test_ppl": math.exp(min(loss, 50.0)), "test_tokens": count}
    if bytes_per_token:
        metrics["test_bpb"] = loss / math.log(2) / bytes_per_token
    return metrics


@torch.no_grad()
def masked_lm_metrics(
    model: Bert, batches: Iterable[dict[str, torch.Tensor]], max_batches: int | None = None
) -> dict[str, float]:
    """Mean cross-entropy and accuracy per masked token, and the perplexity of that loss."""
    model.eval()
    device = next(model.parameters()).device
    total, correct, count = 0.0, 0, 0
    for batch in _limit(batches, max_batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        logits, loss = model(
            batch["input_ids"],
            batch["attention_mask"],
            labels=batch["labels"],
            ignore_index=IGNORE_INDEX,
        )
        targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
        total += float(loss) * targets.numel()
        correct += int((logits.argmax(-1) == targets).sum())
        count += targets.numel()
    loss = total / max(count, 1)
    return {
        "test_mlm_loss": loss,
        "test_mlm_acc": correct / max(count, 1),
        "test_ppl": math.exp(min(loss, 50.0)),
        "test_masked_tokens": count,
    }


def _limit(batches: Iterable, max_batches: int | None) -> Iterable:
    return batches if max_batches is None else islice(batches, int(max_batches))
