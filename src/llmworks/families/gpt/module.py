"""GPT's training: ``CausalLM``, the ``LightningModule`` (next-token loss, Muon/AdamW +
the schedule of ``optim``), its scorer, and ``build``, which the shared recipe calls.

Per step it logs ``train_loss`` (and ``train_aux_loss`` for MoE); per validation ``val_loss``
(nats/token), ``val_ppl``, ``val_bpb`` (bits per UTF-8 byte: independent of the tokenizer, so
runs with different vocabularies compare) and ``val_aux_loss`` for MoE, every validation
token counted once across batches and DDP ranks.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import torch
from omegaconf import DictConfig

from llmworks.data.backend import data_config
from llmworks.data.shards import TextPerToken, open_shards
from llmworks.families.gpt.data import WindowDataModule
from llmworks.families.gpt.hf import from_hf
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.families.gpt.settings import settings
from llmworks.models import checkpoints
from llmworks.models.hub import check_tokenizer
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.spec import Built
from llmworks.training.metrics import ScoredModule, TokenMeans, bits_per_byte, perplexity
from llmworks.training.optim import MuonOrAdamWOptimizers, OptimConfig

Batch = tuple[torch.Tensor, torch.Tensor]


class NextTokenScores(TokenMeans):
    """Mean next-token loss over windows, and what follows from it: perplexity (per token of
    this tokenizer), bits per byte and word-level perplexity (both comparable across
    tokenizers), and the MoE balance loss. Validation (``val_*``) and test (``test_*``)."""

    def __init__(self, text: TextPerToken | None, moe: bool):
        super().__init__("loss", "aux_loss")
        self.text, self.moe = text, moe

    def update(self, model: GPT, batch: Batch) -> None:  # type: ignore[override]
        x, y = batch
        _, loss = model(x, y, return_logits=False)
        n = y.numel()
        super().update(n, loss=loss * n, aux_loss=model.aux_loss() * n)

    def results(self) -> dict[str, float]:
        s = self.compute()
        out = {"loss": s["loss"], "ppl": perplexity(s["loss"]), "tokens": int(s["count"])}
        if self.text is not None:
            out["bpb"] = bits_per_byte(s["loss"], self.text.bytes)
        if self.text is not None and self.text.words:
            out["word_ppl"] = perplexity(s["loss"] / self.text.words)
        if self.moe:
            out["aux_loss"] = s["aux_loss"]
        return out


class CausalLM(MuonOrAdamWOptimizers, ScoredModule):
    def __init__(
        self,
        config: GPTConfig,
        optim: OptimConfig,
        text: TextPerToken | None,
        compile: bool,
        model: GPT | None = None,
    ):
        """``model``: weights to start from (an imported checkpoint); else a new ``GPT``."""
        super().__init__()
        self.save_hyperparameters({"model": asdict(config), "optim": asdict(optim)})
        self.model = model if model is not None else GPT(config)
        self.optim = optim
        self.compile_model = compile
        # text per token of the validation split, for val_bpb and val_word_ppl
        self.scores = NextTokenScores(text, moe=config.mlp == "moe")
        self.flops_per_batch: float | None = None  # read by Lightning's ThroughputMonitor

    @property
    def config(self) -> GPTConfig:
        return self.model.config

    def configure_model(self) -> None:
        super().configure_model()  # shards first under trainer=fsdp
        if self.compile_model and not getattr(self, "_compiled", False):
            self.model.compile()  # in place: parameter names (and checkpoints) stay the same
            self._compiled = True

    def samples_in_batch(self, batch: Batch) -> int:
        return batch[0].shape[0]

    def tokens_in_batch(self, batch: Batch) -> int:
        return batch[0].numel()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y, return_logits=False)
        self.flops_per_batch = self.model.flops_per_token(x.shape[1]) * x.numel()
        self.log("train_loss", loss, prog_bar=True)
        if self.config.mlp == "moe":
            aux = self.model.aux_loss()
            self.log("train_aux_loss", aux)
            return loss + self.config.aux_loss_coef * aux
        return loss

    def adamw_only(self) -> tuple[torch.Tensor, ...]:
        """Matrices that stay with AdamW under Muon: the output head, as in modded-nanogpt
        (tied, it is the embedding, which AdamW takes anyway)."""
        return (self.model.lm_head.weight,)


def build(cfg: DictConfig, paths: Paths) -> Built:
    """GPT's data and module from ``cfg.gpt``: a new model of ``gpt.model``, or, with
    ``gpt.init_from``, a Hugging Face checkpoint's model and weights (its config replaces
    ``gpt.model``; the shards must be encoded with its tokenizer)."""
    g, s = cfg.gpt, settings(cfg)
    tok_json = paths.trained_tokenizer(str(g.tokenizer))
    shards = open_shards(paths.tokens(str(g.tokenizer)), tok_json)
    model, base, data_id = None, None, shards.fingerprint
    inputs = {
        f"tokens-{g.tokenizer}": ("dataset", shards.root),
        f"tokenizer-{g.tokenizer}": ("tokenizer", tok_json),
    }
    if g.init_from:
        where = f"gpt.init_from={g.init_from}"
        model, base = from_hf(str(g.init_from), where=where)
        model.train()  # from_hf returns it ready for inference; dropout must act here
        check_tokenizer(base, tok_json, model.config.vocab_size, where, str(g.tokenizer))
        config, data_id = model.config, f"{data_id}/{checkpoints.fingerprint(base)}"
        inputs["base-model"] = ("model", base)
    else:
        config = replace(s.model, vocab_size=shards.vocab_size)
    data_cfg = s.data
    stream = data_config(cfg).stream(shards.root, str(g.tokenizer))
    if stream is not None:
        data_id = f"{data_id}/litdata"  # another order of batches: never resume across them
    data = WindowDataModule(
        shards.root,
        tok_json,
        data_cfg.window(config.block_size),
        data_cfg,
        int(cfg.seed),
        stream,
    )
    module = CausalLM(
        config,
        s.optim,
        shards.text_per_token("validation"),
        bool(g.compile),
        model,
    )
    return Built(
        module,
        data,
        data_id=data_id,
        files={TOKENIZER_FILE: tok_json},
        inputs=inputs,
        base=base,
    )
