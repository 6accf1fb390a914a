"""What a tokenizer trains on: the whole train split, or a reproducible sample of it of at
most ``train_bytes``.

A vocabulary is settled long before a large corpus ends (1 GB of text gives the merges that
10 GB would, at a tenth of the time), so ``tokenizer.train_bytes`` caps the text the trainer
reads. The sample is whole documents drawn in a seeded random order, kept in corpus order;
the tokenizer's statistics are still measured on the whole validation split.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pyarrow.compute as pc

from llmworks.errors import LlmworksError

log = logging.getLogger(__name__)


def document_bytes(split: datasets.Dataset, batch_size: int = 10_000) -> np.ndarray:
    """The UTF-8 size of each document, counted by Arrow without making Python strings."""
    sizes = [
        pc.binary_length(batch["text"]).to_numpy(zero_copy_only=False)
        for batch in split.with_format("arrow").iter(batch_size=batch_size)
    ]
    return np.concatenate(sizes).astype(np.int64) if sizes else np.zeros(0, np.int64)


def training_sample(
    split: datasets.Dataset, train_bytes: int | None, seed: int, where: str
) -> datasets.Dataset:
    """``split`` when it holds at most ``train_bytes`` (or no cap is set); else the documents
    of a seeded random order up to ``train_bytes``, in their corpus order. ``where`` names
    the setting in messages."""
    if train_bytes is None:
        return split
    sizes = document_bytes(split)
    total = int(sizes.sum())
    if total <= train_bytes:
        return split
    order = np.random.default_rng(seed).permutation(len(sizes))
    taken = int(np.searchsorted(np.cumsum(sizes[order]), train_bytes, side="right"))
    if taken == 0:
        raise LlmworksError(
            f"{where}={train_bytes} is smaller than the first sampled document "
            f"({int(sizes[order[0]])} bytes); raise it (or set null to train on the whole "
            "split)"
        )
    chosen = np.sort(order[:taken])
    log.info(
        "%s: training on %d of %d documents (%.1f of %.1f MB)",
        where,
        taken,
        len(sizes),
        sizes[chosen].sum() / 1e6,
        total / 1e6,
    )
    return split.select(chosen)
