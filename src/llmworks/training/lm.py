"""The GPT as a ``LightningModule``: next-token loss, AdamW + warmup/cosine, LM metrics.

Per step it logs ``train_loss`` (and ``train_aux_loss`` for MoE); ``lr`` and ``tokens_per_s``
come from the shared callbacks. Per validation it logs ``val_loss`` (nats/token),
``val_ppl``, ``val_bpb`` (bits per UTF-8 byte: independent of the tokenizer, so runs with
different vocabularies compare) and ``val_aux_loss``; sums are reduced over DDP ranks so
every validation window counts once.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import lightning as L
import torch

from llmworks.models.gpt import GPT, GPTConfig
from llmworks.training.optim import configure_adamw


class CausalLM(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any],
        bytes_per_token: float | None = None,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = GPT(GPTConfig(**model))
        self.bytes_per_token = bytes_per_token
        self._compile = compile
        self._val: list[torch.Tensor] = []

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def configure_model(self) -> None:
        if self._compile and not getattr(self, "_compiled", False):
            self.model.compile()  # in place: parameter names (and checkpoints) stay the same
            self._compiled = True

    def tokens_in_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def flops_per_token(self) -> float:
        return self.model.flops_per_token()

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        self.log("train_loss", loss, prog_bar=True)
        if self.config.mlp == "moe":
            aux = self.model.aux_loss()
            self.log("train_aux_loss", aux)
            return loss + self.config.aux_loss_coef * aux
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val = [torch.zeros(3, dtype=torch.float64, device=self.device)]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self.model(x, y)
        n = y.numel()
        self._val.append(
            torch.stack(
                [
                    loss.double() * n,
                    self.model.aux_loss().double() * n,
                    torch.tensor(n, dtype=torch.float64, device=self.device),
                ]
            )
        )

    def on_validation_epoch_end(self) -> None:
        total = torch.stack(self._val).sum(0)
        total = self.trainer.strategy.reduce(total, reduce_op="sum")  # sums over DDP ranks
        loss = (total[0] / total[2].clamp(min=1)).item()
        metrics = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0))}
        if self.bytes_per_token:
            metrics["val_bpb"] = loss / math.log(2) / self.bytes_per_token
        if self.config.mlp == "moe":
            metrics["val_aux_loss"] = (total[1] / total[2].clamp(min=1)).item()
        # identical on every rank already, so no sync_dist
        self.log_dict(metrics, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_adamw(self.model, self.hparams.optim, self.trainer.max_steps, self.trainer)

    @classmethod
    def for_config(cls, cfg: GPTConfig, optim: dict[str, Any], **kwargs) -> CausalLM:
        return cls(asdict(cfg), optim, **kwargs)
