"""BERT's model (``families/bert/model.py``): the decoder is tied and survives save/load,
the pooler gives one bounded vector, and rotary attention reads relative positions only."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import padded_batch, random_bert

from llmworks.families.bert.model import Bert


def test_decoder_is_tied_and_save_load_round_trips(tmp_path: Path) -> None:
    model = random_bert()
    assert model.head.decoder.weight is model.embeddings.tok.weight
    model.save(tmp_path)
    again = Bert.load(tmp_path)
    assert again.head.decoder.weight is again.embeddings.tok.weight
    idx, mask, _ = padded_batch()
    with torch.no_grad():
        assert torch.equal(model(idx, mask)[0], again(idx, mask)[0])
    pooled = model.pool(model.encode(idx, mask))
    assert pooled.shape == (3, 32) and pooled.abs().max() <= 1


def test_rope_attention_reads_relative_positions_only() -> None:
    """Without a position table, a RoPE encoder's output for a token depends on where its
    neighbours are relative to it: a sequence shifted right by padding-free prefix tokens
    that are masked out gives the same states as the sequence alone."""
    model = random_bert(pos="rope")
    idx, _, _ = padded_batch()
    seq = idx[0, :10]
    prefix = torch.tensor([11, 12, 13])
    shifted = torch.cat((prefix, seq))[None]
    hide_prefix = torch.ones_like(shifted, dtype=torch.bool)
    hide_prefix[0, :3] = False
    with torch.no_grad():
        alone = model.encode(seq[None])
        moved = model.encode(shifted, hide_prefix)
    assert (moved[0, 3:] - alone[0]).abs().max().item() <= 1e-4
    learned = random_bert(pos="learned")
    with torch.no_grad():
        drift = learned.encode(shifted, hide_prefix)[0, 3:] - learned.encode(seq[None])[0]
    assert drift.abs().max().item() > 1e-2  # a learned table does see the absolute shift
