"""Transformer layers shared by the GPT and BERT models, in the order data flows through them.

norms (``LayerNorm`` with optional bias, ``RMSNorm``) -> rotary position embedding ->
``Attention`` (MHA / GQA / MQA from ``n_kv_head``, causal or bidirectional with a padding
mask, optional sliding window, optional ``KVCache``) -> feed-forward (``MLP`` with GELU,
``SwiGLU``, ``MoE`` of SwiGLU experts with a load-balancing loss).

Every layer computes exactly what its Hugging Face counterpart computes (GPT-2, Llama,
Mixtral, BERT), so weights can move between the two with a renaming and nothing else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- norms


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (``nn.LayerNorm`` grew ``bias=`` late; this is explicit)."""

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 as Llama does so bf16 runs stay stable."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(kind: str, dim: int, bias: bool = True, eps: float = 1e-5) -> nn.Module:
    """``"layernorm"`` or ``"rmsnorm"`` (an RMSNorm has no bias whatever ``bias`` says)."""
    if kind == "layernorm":
        return LayerNorm(dim, bias=bias, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r} (layernorm | rmsnorm)")


# ----------------------------------------------------------------------------- positions


ROPE_SCALINGS = ("llama3",)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) in the "rotate half" layout that Llama checkpoints use.

    ``forward(start, end, dtype)`` returns ``(cos, sin)`` of positions ``start..end``, each
    ``(end - start, head_dim)``; positions are absolute, so a KV-cached decode step passes its
    offset and rotates correctly. The angles are computed once into a table (see ``table``)
    and sliced: a decode step would otherwise spend eight tensor ops per token on trigonometry.

    ``scaling`` stretches the context a model was trained on: ``{"type": "llama3", "factor",
    "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}`` slows the
    low frequencies by ``factor`` and keeps the high ones, blending in between (Llama 3.1+).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        self.head_dim, self.base, self.scaling = head_dim, base, scaling
        self.register_buffer("inv_freq", self._inv_freq(), persistent=False)
        # (the inv_freq it was computed from, cos, sin): see ``table``
        self._cos_sin: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _inv_freq(self) -> torch.Tensor:
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64).float() / self.head_dim
        inv_freq = 1.0 / (self.base**exponent)
        if self.scaling is not None:
            args = {k: v for k, v in self.scaling.items() if k != "type"}
            inv_freq = llama3_scaled(inv_freq, **args)
        return inv_freq

    def reset_buffers(self) -> None:
        """Compute the table again (a model built on the ``meta`` device, then allocated)."""
        self.inv_freq = self._inv_freq().to(self.inv_freq.device)
        self._cos_sin = None

    def forward(
        self, start: int, end: int, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = self.table(end, dtype)
        return cos[start:end], sin[start:end]

    def table(self, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin)`` of positions ``0..n`` for some ``n >= length``, in ``dtype``: kept
        between calls and computed again only when it falls short (then twice as long, so a
        growing decode recomputes it a logarithmic number of times), when ``dtype`` changes or
        when ``inv_freq`` is a new tensor (moved, cast or reset). A plain attribute, not a
        buffer: nothing to save, and a 128k-position model holds no longer a table than it uses."""
        kept = self._cos_sin
        if (
            kept is None
            or kept[0] is not self.inv_freq
            or kept[1].shape[0] < length
            or kept[1].dtype != dtype
        ):
            have = kept[1].shape[0] if kept is not None else 0
            n = max(length, 2 * have) if length > have else have
            # not an inference tensor even under inference_mode: a training step may use it next
            with torch.inference_mode(False), torch.no_grad():
                positions = torch.arange(n, device=self.inv_freq.device).float()
                freqs = positions[:, None] * self.inv_freq[None, :]
                emb = torch.cat((freqs, freqs), dim=-1)
                kept = self._cos_sin = (self.inv_freq, emb.cos().to(dtype), emb.sin().to(dtype))
        return kept[1], kept[2]


def llama3_scaled(
    inv_freq: torch.Tensor,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position_embeddings: int,
) -> torch.Tensor:
    """Llama 3's frequency rule: wavelengths longer than the original context divided by
    ``low_freq_factor`` slow down by ``factor``, those shorter than it divided by
    ``high_freq_factor`` stay, and the band between is interpolated smoothly."""
    wavelen = 2 * math.pi / inv_freq
    low, high = (original_max_position_embeddings / f for f in (low_freq_factor, high_freq_factor))
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return torch.where(
        wavelen > low, inv_freq / factor, torch.where(wavelen < high, inv_freq, blended)
    )


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(B, H, T, head_dim)`` by the angles in ``cos``/``sin`` ``(T, head_dim)``."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# ----------------------------------------------------------------------------- attention


class KVCache(nn.Module):
    """Keys and values of the positions seen so far, for one attention layer.

    Holds only ``n_kv_head`` heads, so GQA/MQA models cache a fraction of what MHA would.
    The model creates and drops these (``GPT.set_kv_cache`` / ``clear_kv_cache``).
    """

    def __init__(
        self,
        batch: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        shape = (batch, n_kv_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(
        self, start: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``/``v`` at positions ``start..start+T`` and return everything up to there:
        written in place and read as views of the filled prefix, so a decode step copies one
        position's keys and values and allocates nothing."""
        T, end = k.shape[2], start + k.shape[2]
        self.k.narrow(2, start, T).copy_(k)
        self.v.narrow(2, start, T).copy_(v)
        return self.k.narrow(2, 0, end), self.v.narrow(2, 0, end)


class Attention(nn.Module):
    """Multi-head attention; ``n_kv_head`` picks the variant: MHA when it equals ``n_head``,
    MQA at 1, GQA in between (query head ``h`` reads key/value head ``h // (n_head // n_kv_head)``).

    ``causal=False`` gives BERT's bidirectional attention; ``padding_mask`` (``(B, S)``, True on
    real tokens) hides padding either way. ``window`` limits each query to the last ``window``
    positions, itself included (Mistral's sliding window). Runs through
    ``F.scaled_dot_product_attention`` so GPUs use the flash / memory-efficient kernels.

    ``head_dim`` may differ from ``d_model // n_head`` (Qwen3); ``qkv_bias`` puts biases on
    the query, key and value projections alone (Qwen2; None: as ``bias``); ``qk_norm``
    RMS-normalises each query and key head before the rotation (Qwen3).
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        n_kv_head: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        causal: bool = True,
        window: int | None = None,
        head_dim: int | None = None,
        qkv_bias: bool | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if (head_dim is None and d_model % n_head) or n_head % n_kv_head:
            raise ValueError(
                f"need n_head | d_model and n_kv_head | n_head, got "
                f"d_model={d_model} n_head={n_head} n_kv_head={n_kv_head}"
            )
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = head_dim or d_model // n_head
        self.causal, self.window, self.dropout = causal, window, dropout
        # one matmul for q, k and v: the keys and values are n_kv_head heads wide
        qkv_bias = bias if qkv_bias is None else qkv_bias
        self.qkv = nn.Linear(d_model, (n_head + 2 * n_kv_head) * self.head_dim, bias=qkv_bias)
        self.proj = nn.Linear(n_head * self.head_dim, d_model, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if qk_norm else None
        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        padding_mask: torch.Tensor | None = None,
        input_pos: int = 0,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The attended ``(B, T, d_model)``; with ``return_weights`` also the attention
        probabilities ``(B, n_head, T, S)`` (for heatmaps), computed as an explicit
        ``softmax(q k^T / sqrt(head_dim)) v``: the fused SDPA kernels never materialise them."""
        B, T, _ = x.shape
        nq, nkv = self.n_head, self.n_kv_head
        qkv = self.qkv(x).view(B, T, nq + 2 * nkv, self.head_dim)
        qk, v = qkv.split([nq + nkv, nkv], dim=2)
        if self.q_norm is not None:
            q, k = qk.split([nq, nkv], dim=2)
            qk = torch.cat((self.q_norm(q), self.k_norm(k)), dim=2)
        qk, v = qk.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, head_dim)
        if rope is not None:  # queries and keys turn by the same angles: one pass for both
            qk = apply_rotary(qk, *rope)
        q, k = qk.split([nq, nkv], dim=1)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
        mask = self._mask(T, k.shape[2], input_pos, padding_mask, x.device)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if return_weights:
            y, weights = self._explicit(q, k, v, mask, dropout)
        else:
            # a plain causal prefill lets SDPA pick its fastest causal kernel (no mask tensor)
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                is_causal=mask is None and self.causal and T > 1,
                dropout_p=dropout,
                enable_gqa=self.n_kv_head != self.n_head,
            )
        y = drop(self.proj(y.transpose(1, 2).reshape(B, T, -1)), self.dropout, self.training)
        return (y, weights) if return_weights else y

    def _explicit(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        dropout: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What SDPA computes, step by step, keeping the probabilities."""
        T, S = q.shape[2], k.shape[2]
        group = self.n_head // self.n_kv_head  # GQA / MQA: query head h reads key head h // group
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) / self.head_dim**0.5
        if mask is None and self.causal and T > 1:  # where SDPA would apply is_causal
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        return F.dropout(weights, dropout) @ v, weights

    def _mask(
        self,
        T: int,
        S: int,
        input_pos: int,
        padding_mask: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Boolean ``(B|1, 1, T, S)`` mask (True = may attend), or None when SDPA's own
        ``is_causal`` (or no mask at all) says the same."""
        simple_causal = self.causal and input_pos == 0 and S == T
        single_step = self.causal and T == 1
        if (
            padding_mask is None
            and self.window is None
            and (simple_causal or single_step or not self.causal)
        ):
            return None
        q_pos = torch.arange(input_pos, input_pos + T, device=device)[:, None]
        k_pos = torch.arange(S, device=device)[None, :]
        mask = torch.ones(T, S, dtype=torch.bool, device=device)
        if self.causal:
            mask = k_pos <= q_pos
        if self.window is not None:
            mask = mask & (q_pos - k_pos < self.window)
        mask = mask[None, None]
        if padding_mask is not None:
            mask = mask & padding_mask[:, None, None, :S].bool()
        return mask


# ----------------------------------------------------------------------------- feed-forward


class MLP(nn.Module):
    """Two linears around a GELU (GPT-2: ``approximate="tanh"``; BERT: ``"none"``)."""

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        bias: bool = True,
        dropout: float = 0.0,
        approximate: str = "none",
    ):
        super().__init__()
        self.fc = nn.Linear(d_model, d_hidden, bias=bias)
        self.proj = nn.Linear(d_hidden, d_model, bias=bias)
        self.dropout, self.approximate = dropout, approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(F.gelu(self.fc(x), approximate=self.approximate))
        return drop(y, self.dropout, self.training)


class SwiGLU(nn.Module):
    """Gated feed-forward of Llama: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, d_model: int, d_hidden: int, bias: bool = False, dropout: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(d_model, d_hidden, bias=bias)
        self.up = nn.Linear(d_model, d_hidden, bias=bias)
        self.down = nn.Linear(d_hidden, d_model, bias=bias)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop(self.down(F.silu(self.gate(x)) * self.up(x)), self.dropout, self.training)


class MoE(nn.Module):
    """Sparse mixture of SwiGLU experts, routed as Mixtral does: softmax over ``n_expert``
    router logits, keep the ``top_k`` largest, renormalise them to sum to one.

    After each forward, ``aux_loss`` holds the load-balancing loss of Switch Transformer
    (``n_expert * sum_e fraction_routed_e * mean_prob_e``; 1.0 when perfectly balanced in
    expectation at top-1) for the model to add to its loss and log.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        n_expert: int,
        top_k: int = 2,
        bias: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if not 1 <= top_k <= n_expert:
            raise ValueError(f"need 1 <= top_k <= n_expert, got top_k={top_k} n_expert={n_expert}")
        self.n_expert, self.top_k = n_expert, top_k
        self.router = nn.Linear(d_model, n_expert, bias=False)
        self.experts = nn.ModuleList(
            SwiGLU(d_model, d_hidden, bias, dropout) for _ in range(n_expert)
        )
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = F.softmax(self.router(x).float(), dim=-1)  # (N, n_expert)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # (N, top_k)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            # every expert runs, even on zero tokens, so DDP sees a gradient for each parameter
            token, slot = torch.where(chosen == e)
            y = expert(x[token]) * weights[token, slot, None]
            out.index_add_(0, token, y.to(x.dtype))
        routed = F.one_hot(chosen, self.n_expert).float().mean(dim=0)  # (top_k, n_expert)
        self.aux_loss = self.n_expert * (routed * probs.mean(dim=0)).sum()
        return out.view(shape)


def drop(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)``, not even called where it is the identity (evaluation,
    or ``p = 0``): a decode step would otherwise make nine calls that change nothing."""
    return F.dropout(x, p, training) if training and p > 0 else x


def init_linear_(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2 / BERT initialisation: normal(0, std) weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


__all__ = [
    "LayerNorm",
    "RMSNorm",
    "make_norm",
    "RotaryEmbedding",
    "apply_rotary",
    "KVCache",
    "Attention",
    "MLP",
    "SwiGLU",
    "MoE",
    "drop",
    "init_linear_",
]
