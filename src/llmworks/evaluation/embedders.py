"""Text embedders (``texts -> (n, dim)`` array) the representation comparison scores on one
task: bag-of-words counts and TF-IDF (the baselines), and mean-pooled Transformer states (what
the Transformer families offer; a family with other vectors offers its own embedder).

Transformers are mean-pooled over their real tokens (padding and BERT's ``[CLS]``/``[SEP]``
left out): no model here was trained to make a sequence vector, and the mean of the last
hidden states is the usual label-free baseline. Texts longer than the model's context are
cut to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import sparse
from tokenizers import Tokenizer
from torch import nn

from llmworks.models.bow import fit_bow

ArrayLike = np.ndarray | sparse.spmatrix
# texts -> one row per text, dense or scipy-sparse
Embedder = Callable[[Sequence[str]], ArrayLike]


def bag_of_words_embedder(
    train_texts: Sequence[str], tfidf: bool, max_features: int | None = None
) -> Embedder:
    """Counts or TF-IDF weights over the training split's vocabulary (and idf), as sparse
    rows: a hub corpus' vocabulary would not fit densely."""
    return fit_bow(train_texts, tfidf=tfidf, max_features=max_features).transform


def _token_batches(
    tokenizer: Tokenizer, texts: Sequence[str], max_len: int, batch_size: int, pad_id: int
):
    """``(ids, real, keep)`` tensors per batch: ``real`` marks tokens (not padding), ``keep``
    the real, non-special ones."""
    for start in range(0, len(texts), batch_size):
        encs = tokenizer.encode_batch(list(texts[start : start + batch_size]))
        rows = [_cut(e.ids, e.special_tokens_mask, max_len) for e in encs]
        width = max(max((len(ids) for ids, _ in rows), default=1), 1)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.bool)
        keep = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (row, special) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            real[i, : len(row)] = True
            keep[i, : len(row)] = torch.tensor([s == 0 for s in special], dtype=torch.bool)
        yield ids, real, keep


def _cut(ids: list[int], special: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """The first ``max_len`` tokens; a closing special token (BERT's ``[SEP]``) is kept."""
    if len(ids) <= max_len:
        return ids, special
    if special[-1]:
        return ids[: max_len - 1] + ids[-1:], special[: max_len - 1] + special[-1:]
    return ids[:max_len], special[:max_len]


def _mean_pool(h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    w = keep.to(h.device, h.dtype)[..., None]
    return ((h * w).sum(1) / w.sum(1).clamp(min=1.0)).float().cpu()


def transformer_embedder(
    model: nn.Module, tokenizer: Tokenizer, max_len: int, batch_size: int
) -> Embedder:
    """Mean of a Transformer's final hidden states (``model.encode``) over each text's tokens,
    padding and the tokenizer's special tokens (BERT's ``[CLS]``/``[SEP]``) left out.

    ``max_len`` is the longest sequence the model was trained on: positions past it were
    never learned. Padding is hidden from attention, so padded rows give the states of the
    unpadded text (for a causal model that holds anyway: no token sees what follows it)."""
    model.eval()
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    device = next(model.parameters()).device
    width = model.config.d_model

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        out = [
            _mean_pool(model.encode(ids.to(device), padding_mask=real.to(device)), keep)
            for ids, real, keep in _token_batches(tokenizer, texts, max_len, batch_size, pad_id)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, width))

    return embed
