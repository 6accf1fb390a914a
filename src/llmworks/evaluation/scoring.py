"""Test-split scores through the scorer a family validates with (``update(model, batch)``,
``results()``), so a test figure and its validation counterpart are computed alike."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

import torch
from torch import nn

from llmworks.evaluation.recorder import Recorder


@torch.no_grad()
def score_batches(
    model: nn.Module,
    scores: Any,
    batches: Iterable,
    limit: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Run a family's scorer over the first ``limit`` batches (all with None)."""
    scores = scores.to(device)
    model.eval()
    for batch in batches if limit is None else islice(batches, int(limit)):
        scores.update(model, to_device(batch, torch.device(device)))
    return scores.results()


def record_test_scores(
    rec: Recorder, family: str, model: nn.Module, scores: Any, batches: Iterable, note: str = ""
) -> dict[str, float]:
    """The family's scorer over the test split's first ``evaluate.max_test_batches`` batches,
    recorded as ``<family>.test_*``; ``note`` says what the figures depend on (for the
    table's caption)."""
    results = score_batches(model, scores, batches, rec.cfg.evaluate.max_test_batches, rec.device)
    metrics = {f"test_{k}": v for k, v in results.items()}
    rec.record(family, metrics, "On the test split" + (f" ({note})" if note else ""))
    return metrics


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
