"""A decoder-only transformer language model (GPT), every variant from one config.

``GPTConfig`` switches between classic GPT-2 (learned positions, LayerNorm, GELU, biases,
tied embeddings) and Llama / Mistral / Qwen / Phi-3 / Mixtral style models (RoPE with
optional Llama 3 scaling, RMSNorm, SwiGLU or a mixture of experts, grouped-query attention,
an optional sliding window, biases on q/k/v alone, q/k norms); the layers live in
``llmworks.models.layers``.
The model's own verbs follow: setting up and clearing its KV cache (what
``llmworks.generation`` decodes with), ``save`` / ``load``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmworks.domains import at_least, fraction, positive
from llmworks.models.layers import (
    MLP,
    ROPE_SCALINGS,
    Attention,
    KVCache,
    MoE,
    RotaryEmbedding,
    SwiGLU,
    drop,
    init_linear_,
    make_norm,
)
from llmworks.models.losses import linear_cross_entropy
from llmworks.models.persistence import load_model_dir, save_model_dir


@dataclass
class GPTConfig:
    """Every architectural switch of the model; the values live in ``conf/gpt/*.yaml``."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_kv_head: int | None  # None or n_head: MHA; 1: MQA; in between: GQA
    d_model: int
    d_hidden: int | None  # None: 4 * d_model (gelu) or Llama's ~8/3 * d_model (swiglu, moe)
    pos: str  # learned | rope
    rope_base: float
    norm: str  # layernorm | rmsnorm
    norm_eps: float
    mlp: str  # gelu | swiglu | moe
    n_expert: int
    top_k: int
    aux_loss_coef: float  # weight of the MoE load-balancing loss in the training loss
    window: int | None  # sliding-window attention span (None: full causal attention)
    dropout: float
    bias: bool
    tie_weights: bool
    # (defaults only so that a model saved before these switches existed still loads)
    head_dim: int | None = None  # None: d_model // n_head
    qkv_bias: bool | None = None  # biases on q/k/v only (Qwen2); None: as `bias`
    qk_norm: bool = False  # RMSNorm of each query and key head before RoPE (Qwen3)
    rope_scaling: dict | None = None  # {type: llama3, factor, ...}: see RotaryEmbedding
    hf_type: str | None = None  # transformers model_type to export as; None: simplest equal
    zero_init_proj: bool = False  # residual branches' output projections start at zero

    def __post_init__(self) -> None:
        at_least(1, vocab_size=self.vocab_size, block_size=self.block_size,
                 n_layer=self.n_layer, n_head=self.n_head, n_kv_head=self.n_kv_head,
                 d_model=self.d_model, d_hidden=self.d_hidden, n_expert=self.n_expert,
                 top_k=self.top_k, window=self.window, head_dim=self.head_dim)  # fmt: skip
        positive(rope_base=self.rope_base, norm_eps=self.norm_eps)
        fraction(dropout=self.dropout)
        if self.mlp == "moe" and self.top_k > self.n_expert:
            raise ValueError(f"GPTConfig.top_k={self.top_k}: must be <= n_expert={self.n_expert}")
        self.n_kv_head = self.n_kv_head or self.n_head
        if self.d_hidden is None:
            if self.mlp == "gelu":
                self.d_hidden = 4 * self.d_model
            else:  # a gated MLP has three matrices: 2/3 of 4x keeps the parameter count
                self.d_hidden = 64 * math.ceil(int(8 * self.d_model / 3) / 64)
        if (self.head_dim is None and self.d_model % self.n_head) or self.n_head % self.n_kv_head:
            raise ValueError(
                f"need n_head | d_model and n_kv_head | n_head, got d_model={self.d_model} "
                f"n_head={self.n_head} n_kv_head={self.n_kv_head}"
            )
        self.head_dim = self.head_dim or self.d_model // self.n_head
        scaling = (self.rope_scaling or {}).get("type")
        if self.rope_scaling is not None and scaling not in ROPE_SCALINGS:
            raise ValueError(
                f"GPTConfig.rope_scaling type {scaling!r}: expected one of {ROPE_SCALINGS}"
            )
        for name, value, allowed in (
            ("pos", self.pos, ("learned", "rope")),
            ("norm", self.norm, ("layernorm", "rmsnorm")),
            ("mlp", self.mlp, ("gelu", "swiglu", "moe")),
        ):
            if value not in allowed:
                raise ValueError(f"GPTConfig.{name}={value!r}: expected one of {allowed}")


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = make_norm(cfg.norm, cfg.d_model, cfg.bias, cfg.norm_eps)
        self.attn = Attention(
            cfg.d_model,
            cfg.n_head,
            cfg.n_kv_head,
            cfg.bias,
            cfg.dropout,
            causal=True,
            window=cfg.window,
            head_dim=cfg.head_dim,
            qkv_bias=cfg.qkv_bias,
            qk_norm=cfg.qk_norm,
            norm_eps=cfg.norm_eps,
        )
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.bias, cfg.norm_eps)
        if cfg.mlp == "gelu":
            self.ffn = MLP(cfg.d_model, cfg.d_hidden, cfg.bias, cfg.dropout, approximate="tanh")
        elif cfg.mlp == "swiglu":
            self.ffn = SwiGLU(cfg.d_model, cfg.d_hidden, cfg.bias, cfg.dropout)
        else:
            self.ffn = MoE(
                cfg.d_model, cfg.d_hidden, cfg.n_expert, cfg.top_k, cfg.bias, cfg.dropout
            )

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple | None,
        input_pos: int,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, padding_mask=padding_mask, input_pos=input_pos)
        return x + self.ffn(self.norm2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model) if cfg.pos == "learned" else None
        self.rope = (
            RotaryEmbedding(cfg.head_dim, cfg.rope_base, cfg.rope_scaling)
            if cfg.pos == "rope"
            else None
        )
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg.norm, cfg.d_model, cfg.bias, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            # input and output embeddings share one matrix: fewer parameters, and in small
            # models it trains as well or better (Press & Wolf, 2017)
            self.lm_head.weight = self.wte.weight
        self.apply(init_linear_)
        # each residual branch adds to the stream, so after 2 * n_layer additions the variance
        # would grow with depth; GPT-2 scales the branch outputs' init by 1/sqrt(2 * n_layer).
        # zero_init_proj starts every branch at zero instead (the modded-nanogpt records):
        # the model begins as its embeddings alone and each block opens as it learns
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "ffn.proj.weight", "ffn.down.weight")):
                if cfg.zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def encode(
        self, idx: torch.Tensor, input_pos: int = 0, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final hidden states ``(B, T, d_model)`` of token ids ``idx`` ``(B, T)`` at positions
        ``input_pos..input_pos+T`` (after the last norm): what the LM head reads, and what a
        downstream task pools into a sequence vector. ``padding_mask`` (True on real tokens)
        hides right padding from every query, as in BERT; causal attention already keeps it
        from the real tokens before it, so their states are the same with or without it."""
        T = idx.shape[1]
        if input_pos + T > self.config.block_size:
            raise ValueError(
                f"positions up to {input_pos + T} exceed block_size {self.config.block_size}"
            )
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(input_pos, input_pos + T, device=idx.device))
        rope = self.rope(input_pos, input_pos + T, x.dtype) if self.rope is not None else None
        x = drop(x, self.config.dropout, self.training)
        for block in self.blocks:
            x = block(x, rope, input_pos, padding_mask)
        return self.norm_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        input_pos: int = 0,
        return_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits ``(B, T, vocab)`` for token ids ``idx`` ``(B, T)`` at positions
        ``input_pos..input_pos+T``, and the mean cross-entropy when ``targets`` are given
        (``-1`` targets are ignored). With targets and ``return_logits=False`` (training and
        validation) the logits are None, and on CPU the loss is taken a slice of positions at
        a time, never holding the whole ``(B * T, vocab)`` logits or their gradient: the
        same loss, and 30% off the default training step. On a GPU the loss stays that of
        the whole logits (which ``torch.compile`` fuses): the path the GPU check measured.
        The MoE balance loss is ``self.aux_loss()`` afterwards."""
        h = self.encode(idx, input_pos)
        if targets is not None and not return_logits and h.device.type == "cpu":
            loss = linear_cross_entropy(
                h.flatten(0, 1), self.lm_head.weight, targets.flatten(), ignore_index=-1
            )
            return None, loss
        logits = self.lm_head(h)
        loss = None
        if targets is not None:
            exact = torch.promote_types(logits.dtype, torch.float32)  # bf16 up, float64 kept
            loss = F.cross_entropy(
                logits.flatten(0, 1).to(exact), targets.flatten(), ignore_index=-1
            )
        return (logits if return_logits else None), loss

    def aux_loss(self) -> torch.Tensor:
        """Mean MoE load-balancing loss of the last forward over layers (0 without MoE)."""
        losses = [b.ffn.aux_loss for b in self.blocks if isinstance(b.ffn, MoE)]
        return (
            torch.stack(losses).mean() if losses else torch.zeros((), device=self.wte.weight.device)
        )

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (6N for the weights plus attention; PaLM appendix B)."""
        cfg, T = self.config, seq_len or self.config.block_size
        active = self.num_params()
        if cfg.mlp == "moe":  # only top_k of n_expert experts run per token
            per_expert = 3 * cfg.d_model * cfg.d_hidden
            active -= cfg.n_layer * (cfg.n_expert - cfg.top_k) * per_expert
        return 6 * active + 12 * cfg.n_layer * cfg.d_model * T

    # ------------------------------------------------------------------ KV cache

    def set_kv_cache(self, batch: int, max_len: int | None = None) -> None:
        """Give every attention layer a cache of ``max_len`` positions (``block_size``):
        after a prefill, each decoding step then feeds only the new token."""
        cfg, w = self.config, self.wte.weight
        for block in self.blocks:
            block.attn.kv_cache = KVCache(
                batch,
                cfg.n_kv_head,
                max_len or cfg.block_size,
                cfg.head_dim,
                device=w.device,
                dtype=w.dtype,
            )

    def clear_kv_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None

    # ------------------------------------------------------------------ persistence

    def save(self, out_dir: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (tied weights stored once)."""
        return save_model_dir(self, self.config, out_dir)

    @classmethod
    def load(cls, model_dir: str | Path, map_location: str = "cpu") -> GPT:
        """Load what ``save`` wrote; no Hydra, no Lightning needed."""
        return load_model_dir(cls, GPTConfig, model_dir, map_location)
