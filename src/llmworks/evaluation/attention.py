"""Attention heatmaps for the report: what each head of each layer looks at.

``attention_maps(model, idx)`` returns the attention probabilities of every layer and head of a
GPT or a BERT for one sequence, as a ``[n_layer, n_head, T, T]`` array (row = query, column =
key). The models run attention through ``F.scaled_dot_product_attention``, which never
materialises those probabilities, so a forward pre-hook on each block's ``attn`` records the
exact input it receives and ``Attention.attention_weights`` recomputes the softmax from it.
``token_labels(tokenizer, ids)`` gives readable token strings for the heatmap axes.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, decoders

from llmworks.models.bert import Bert
from llmworks.models.gpt import GPT
from llmworks.models.layers import Attention


def attention_maps(
    model: GPT | Bert, idx: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> np.ndarray:
    """Attention probabilities ``[n_layer, n_head, T, T]`` (float32) of one sequence ``idx``
    (shape ``(T,)`` or ``(1, T)``). ``padding_mask`` (True on real tokens) is for BERT only:
    padded keys get weight 0. Runs in eval mode without gradients; the model's mode is restored.
    """
    device = next(model.parameters()).device
    idx = (idx.reshape(1, -1) if idx.dim() == 1 else idx).to(device)
    if idx.shape[0] != 1:
        raise ValueError(f"attention_maps takes one sequence, got a batch of {idx.shape[0]}")
    if padding_mask is not None:
        if not isinstance(model, Bert):
            raise ValueError("padding_mask is only supported for Bert (GPT has no padding)")
        padding_mask = padding_mask.reshape(1, -1).to(device)

    # each attention layer's call, as (module, {argument name: value}) in layer order
    calls: list[tuple[Attention, dict]] = []

    def record(module: Attention, args: tuple, kwargs: dict) -> None:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        calls.append((module, bound.arguments))

    hooks = [
        block.attn.register_forward_pre_hook(record, with_kwargs=True) for block in model.blocks
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(model, Bert):
                model.encode(idx, padding_mask)
            else:
                model(idx)
            maps = [
                attn.attention_weights(
                    call["x"], rope=call.get("rope"), padding_mask=call.get("padding_mask")
                )
                for attn, call in calls
            ]
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return torch.cat(maps).float().cpu().numpy()  # cat over the batch of 1: one row per layer


def token_labels(tokenizer: Tokenizer, ids: Sequence[int] | torch.Tensor) -> list[str]:
    """One readable string per token id, for heatmap axes.

    Byte-level BPE tokens are decoded back to text (``Ġ`` is a space, ``Ċ`` a newline; a
    token holding only part of a multi-byte character stays as it is); then a space shows
    as ``▁`` and newlines / tabs as ``\\n`` / ``\\t``. WordPiece ``##`` continuations and
    unigram ``▁`` pieces are already readable and are kept.
    """
    ids = ids.reshape(-1).tolist() if isinstance(ids, torch.Tensor) else list(ids)
    byte_level = isinstance(tokenizer.decoder, decoders.ByteLevel)
    special = tokenizer.get_added_tokens_decoder()  # [PAD], <|endoftext|>, ...: shown as is
    labels = []
    for i in ids:
        token = tokenizer.id_to_token(int(i))
        if token is None:
            labels.append(f"<{int(i)}>")
            continue
        if byte_level and int(i) not in special:
            text = tokenizer.decoder.decode([token])
            token = token if "\ufffd" in text else text
        labels.append(token.replace(" ", "\u2581").replace("\n", "\\n").replace("\t", "\\t"))
    return labels
