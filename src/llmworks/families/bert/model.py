"""An encoder-only transformer trained as a masked language model (BERT).

Token + learned position + segment embeddings, bidirectional self-attention with a padding
mask (``llmworks.models.layers.Attention`` with ``causal=False``, so SDPA kernels), a GELU
MLP, post-LN blocks as in the original BERT (``norm="pre"`` for the pre-LN variant, which
trains more stably at depth), an MLM head whose decoder is tied to the input embeddings, and
a ``[CLS]`` pooler for downstream use. Numerically identical to Hugging Face's
``BertForMaskedLM`` (post-LN); ``llmworks.export.hf_bert`` converts the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmworks.domains import at_least, fraction, positive
from llmworks.models.layers import MLP, Attention, LayerNorm, RotaryEmbedding, init_linear_
from llmworks.models.persistence import load_model_dir, save_model_dir


@dataclass
class BertConfig:
    """Every architectural switch of the model; the values live in ``conf/bert/*.yaml``
    (``vocab_size`` and ``pad_id`` come from the tokenizer)."""

    vocab_size: int
    max_seq_len: int  # the longest sequence the model can read (size of a learned table)
    n_layer: int
    n_head: int
    d_model: int
    d_hidden: int | None  # None: 4 * d_model
    type_vocab_size: int  # segments A and B
    norm: str  # post (BERT) | pre
    norm_eps: float
    pos: str  # learned (BERT) | rope (RoFormer, ModernBERT)
    rope_base: float
    dropout: float
    pad_id: int

    def __post_init__(self) -> None:
        at_least(1, vocab_size=self.vocab_size, max_seq_len=self.max_seq_len,
                 n_layer=self.n_layer, n_head=self.n_head, d_model=self.d_model,
                 d_hidden=self.d_hidden, type_vocab_size=self.type_vocab_size)  # fmt: skip
        positive(rope_base=self.rope_base, norm_eps=self.norm_eps)
        fraction(dropout=self.dropout)
        self.d_hidden = self.d_hidden or 4 * self.d_model
        if self.d_model % self.n_head:
            raise ValueError(f"BertConfig: n_head={self.n_head} must divide d_model={self.d_model}")
        if self.norm not in ("post", "pre"):
            raise ValueError(f"BertConfig.norm={self.norm!r}: expected 'post' or 'pre'")
        if self.pos not in ("learned", "rope"):
            raise ValueError(f"BertConfig.pos={self.pos!r}: expected 'learned' or 'rope'")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        # RoPE rotates queries and keys in every block instead of adding a position vector
        self.pos = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.pos == "learned" else None
        self.seg = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        # pre-LN normalises at the entry of every block instead (as Megatron-BERT does)
        self.norm = (
            LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.norm == "post" else nn.Identity()
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, idx: torch.Tensor, token_type: torch.Tensor | None) -> torch.Tensor:
        x = self.tok(idx)
        if self.pos is not None:
            x = x + self.pos(torch.arange(idx.shape[1], device=idx.device))
        # segment A everywhere unless told otherwise: add its row rather than gather zeros
        x = x + (self.seg(token_type) if token_type is not None else self.seg.weight[0])
        return self.drop(self.norm(x))


class Block(nn.Module):
    """Post-LN: ``norm(x + attn(x))`` then ``norm(x + mlp(x))``; pre-LN: ``x + f(norm(x))``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.post = cfg.norm == "post"
        self.attn = Attention(cfg.d_model, cfg.n_head, bias=True, dropout=cfg.dropout, causal=False)
        self.norm1 = LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(
            cfg.d_model, cfg.d_hidden, bias=True, dropout=cfg.dropout, approximate="none"
        )
        self.norm2 = LayerNorm(cfg.d_model, eps=cfg.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if self.post:
            x = self.norm1(x + self.attn(x, rope, padding_mask=padding_mask))
            return self.norm2(x + self.mlp(x))
        x = x + self.attn(self.norm1(x), rope, padding_mask=padding_mask)
        return x + self.mlp(self.norm2(x))


class MLMHead(nn.Module):
    """dense -> GELU -> norm -> decoder onto the vocabulary (its weight is the embeddings')."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm = LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(h))))


class Bert(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_base) if cfg.pos == "rope" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = (
            LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.norm == "pre" else nn.Identity()
        )
        self.head = MLMHead(cfg)
        # the decoder reads out the input embedding matrix: in a small model the vocabulary
        # matrix is a large share of all weights, and tying trains as well (Press & Wolf, 2017)
        self.head.decoder.weight = self.embeddings.tok.weight
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model)
        self.apply(init_linear_)  # BERT's init: N(0, 0.02) weights, zero biases, unit norms

    def encode(
        self,
        idx: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        token_type: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states ``(B, T, d_model)`` of token ids ``(B, T)``; ``padding_mask`` is True
        on real tokens (None: no padding), ``token_type`` the segment of each token (0/1)."""
        if idx.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {idx.shape[1]} exceeds max_seq_len {self.config.max_seq_len}"
            )
        x = self.embeddings(idx, token_type)
        rope = None
        if self.rope is not None:
            rope = self.rope(0, idx.shape[1], x.dtype)
        if padding_mask is not None and bool(padding_mask.all()):
            padding_mask = None  # nothing to hide: SDPA runs unmasked (its fastest kernels)
        for block in self.blocks:
            x = block(x, padding_mask, rope)
        return self.norm_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        token_type: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        ignore_index: int = -100,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Without ``labels``: MLM logits ``(B, T, vocab)`` and None. With ``labels`` (``(B, T)``,
        ``ignore_index`` where no loss is taken): logits ``(N, vocab)`` of the N labelled
        positions only, in row-major order, and their mean cross-entropy. Projecting only
        those ~15% of positions onto the vocabulary saves most of the head's compute."""
        h = self.encode(idx, padding_mask, token_type)
        if labels is None:
            return self.head(h), None
        selected = labels != ignore_index
        logits = self.head(h[selected])
        targets = labels[selected]
        # sum / count rather than mean: a batch without a masked token gives 0, not NaN
        loss = F.cross_entropy(logits.float(), targets, reduction="sum") / max(targets.numel(), 1)
        return logits, loss

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """BERT's pooled sequence representation: ``tanh(dense(h[:, 0]))``, the ``[CLS]`` state.
        Only a downstream task trains it (there is no next-sentence objective here)."""
        return torch.tanh(self.pooler(h[:, 0]))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        pos = self.embeddings.pos
        return n - pos.weight.numel() if non_embedding and pos is not None else n

    def flops_per_token(self, seq_len: int | None = None, mask_rate: float = 1.0) -> float:
        """Training FLOPs per token: 6 per weight of the encoder, attention, and the
        vocabulary projection on the ``mask_rate`` share of positions that have a loss."""
        cfg, T = self.config, seq_len or self.config.max_seq_len
        head = cfg.vocab_size * cfg.d_model
        body = self.num_params() - head - cfg.type_vocab_size * cfg.d_model
        return 6 * body + 6 * head * mask_rate + 12 * cfg.n_layer * cfg.d_model * T

    @torch.no_grad()
    def fill_mask(
        self, idx: torch.Tensor, mask_id: int, top_k: int = 5
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` probabilities and token ids ``(n_masks, k)`` at every ``mask_id`` position
        of the single sequence ``idx`` ``(T,)``."""
        logits, _ = self(idx[None])
        probs = logits[0, idx == mask_id].float().softmax(dim=-1)
        return probs.topk(min(top_k, probs.shape[-1]), dim=-1)

    # ------------------------------------------------------------------ persistence

    def save(self, out_dir: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (the tied decoder stored once)."""
        return save_model_dir(self, self.config, out_dir)

    @classmethod
    def load(cls, model_dir: str | Path, map_location: str = "cpu") -> Bert:
        """Load what ``save`` wrote; no Hydra, no Lightning needed."""
        return load_model_dir(cls, BertConfig, model_dir, map_location)
