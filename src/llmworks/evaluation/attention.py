"""Attention heatmaps for the report: what each head of each layer looks at.

``attention_maps(model, idx)`` returns the attention probabilities of every layer and head of a
Transformer for one sequence, as a ``[n_layer, n_head, T, T]`` array (row = query, column =
key). It asks every ``Attention`` layer for its weights (``return_weights=True``, through
forward hooks, so the model's own code is untouched) while the model encodes ``idx``.
``token_labels(tokenizer, ids)`` gives readable token strings for the heatmap axes, and
``attention_figure`` draws chosen heads on ``evaluate.attention.text`` for the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, decoders
from torch import nn

from llmworks.errors import LlmworksError
from llmworks.evaluation import plots
from llmworks.evaluation.example_text import example_text, test_sample
from llmworks.evaluation.recorder import Recorder
from llmworks.models.layers import Attention


@torch.no_grad()
def attention_maps(
    model: nn.Module, idx: torch.Tensor, padding_mask: torch.Tensor | None = None
) -> np.ndarray:
    """Attention probabilities ``[n_layer, n_head, T, T]`` (float32) of one sequence ``idx``
    (shape ``(T,)`` or ``(1, T)``) through ``model.encode``. ``padding_mask`` (True on real
    tokens) gives padded keys weight 0. Runs in eval mode; the model's mode is restored."""
    device = next(model.parameters()).device
    idx = (idx.reshape(1, -1) if idx.dim() == 1 else idx).to(device)
    if idx.shape[0] != 1:
        raise ValueError(f"attention_maps takes one sequence, got a batch of {idx.shape[0]}")
    maps: list[torch.Tensor] = []

    def ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "return_weights": True}

    def keep_weights(module: nn.Module, args: tuple, kwargs: dict, output: tuple) -> torch.Tensor:
        y, weights = output
        maps.append(weights)
        return y  # the model goes on with the attended values, as without the hooks

    layers = [m for m in model.modules() if isinstance(m, Attention)]
    hooks = [h for m in layers for h in (
        m.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
        m.register_forward_hook(keep_weights, with_kwargs=True),
    )]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        mask = None if padding_mask is None else padding_mask.reshape(1, -1).to(device)
        model.encode(idx, padding_mask=mask)
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


def attention_figure(
    rec: Recorder, family: str, model: nn.Module, tokenizer: Tokenizer, title: str, max_len: int
) -> None:
    """Heatmaps of chosen heads (``evaluate.attention.heads``; the first and last layer by
    default) on ``evaluate.attention.text``, cut to the ``max_len`` tokens the model reads."""
    tokenizer = Tokenizer.from_str(tokenizer.to_str())  # truncation is set on a copy
    tokenizer.enable_truncation(max_len)  # keeps BERT's closing [SEP]
    text, why = example_text(str(rec.cfg.evaluate.attention.text), test_sample(rec))
    ids = torch.tensor(tokenizer.encode(text).ids)
    maps = attention_maps(model, ids)
    path = plots.plot_attention(
        maps,
        token_labels(tokenizer, ids.tolist()),
        rec.assets / f"{family}_attention.png",
        title,
        chosen_heads(rec.cfg.evaluate.attention.heads, *maps.shape[:2]),
    )
    caption = f"{title} on one sentence" + (f" ({why})" if why else "")
    rec.figure(f"{family}_attention", path, caption)


def chosen_heads(heads: Sequence | None, n_layer: int, n_head: int) -> list[tuple[int, int]] | None:
    """``[[layer, head], ...]`` checked against the model's shape (None: the default picks)."""
    if not heads:
        return None
    chosen = [(int(layer), int(head)) for layer, head in heads]
    for layer, head in chosen:
        if not (0 <= layer < n_layer and 0 <= head < n_head):
            raise LlmworksError(
                f"evaluate.attention.heads: [{layer}, {head}] is not a head of a model with "
                f"{n_layer} layers of {n_head} heads (counting from 0)"
            )
    return chosen
