"""Validation and test scores: per-token sums reduced once, and the language-model figures
derived from a mean loss. The training modules and the evaluate stage share these, so a
validation number and its test counterpart are computed the same way."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torchmetrics import Metric

# exp(50) ~ 5e21: a diverged run still gets a finite perplexity (JSON has no infinity)
MAX_LOG_PERPLEXITY = 50.0


def perplexity(loss: float) -> float:
    """``exp`` of a mean cross-entropy in nats, capped at ``exp(50)``."""
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Nats per token -> bits per UTF-8 byte of text: independent of the tokenizer, so models
    with different vocabularies compare."""
    return loss / math.log(2) / bytes_per_token


class TokenMeans(Metric):
    """Means per scored token of summed quantities (loss, correct predictions, ...).

    ``update(n, loss=loss * n, correct=k)`` adds a batch's totals and its ``n`` scored tokens;
    ``compute()`` returns each total divided by all tokens, reduced over DDP ranks, plus the
    token count. Summing totals rather than averaging batch means weighs every token once,
    whatever the batch sizes, padding or number of processes.
    """

    full_state_update = False

    def __init__(self, *names: str):
        super().__init__()
        self.names = names
        for name in (*names, "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, count: int | torch.Tensor, **totals: torch.Tensor) -> None:
        self.count += torch.as_tensor(count, dtype=torch.float64, device=self.count.device)
        for name, total in totals.items():
            setattr(self, name, getattr(self, name) + total.detach().to(torch.float64))

    def compute(self) -> dict[str, float]:
        count = float(self.count)
        means = {name: float(getattr(self, name)) / max(count, 1.0) for name in self.names}
        return means | {"count": count}


class ScoredModule(L.LightningModule):
    """The validation every family's ``LightningModule`` shares: its scorer ``self.scores``
    (a ``TokenMeans`` with ``update(model, batch)`` and ``results()``, the object the
    evaluate stage reuses on the test split) sums over batches and DDP ranks, and each
    validation logs its results as ``val_<name>``."""

    model: torch.nn.Module
    scores: Any
    fsdp: Any = None  # llmworks.training.sharding.FSDPConfig, set by the recipe

    def configure_model(self) -> None:
        """Under ``trainer=fsdp`` (a device mesh exists): shard the model, block by block."""
        if self.device_mesh is not None and self.fsdp is not None:
            from llmworks.training.sharding import is_sharded, shard

            if not is_sharded(self.model):
                shard(self.model, self.device_mesh["data_parallel"], self.fsdp)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.scores.update(self.model, batch)

    def on_validation_epoch_end(self) -> None:
        results = self.scores.results()  # summed over every rank already: no sync_dist
        self.scores.reset()
        self.log_dict({f"val_{k}": v for k, v in results.items()}, prog_bar=True)
