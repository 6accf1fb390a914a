"""The sliced linear cross-entropy (``models/losses.py``) against PyTorch's own
``F.cross_entropy`` of the full logits: the same loss and the same gradients, with ignored
targets, partial last slices, tied weights and every GPT variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny import VARIANTS, tiny

from llmworks.models.losses import linear_cross_entropy


def _pair(rows: int = 37, width: int = 16, vocab: int = 53, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, width, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, width, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_rows", [1, 8, 37, 512])
def test_loss_and_gradients_equal_torch_cross_entropy(chunk_rows):
    hidden, weight, targets = _pair()
    targets[::5] = -1  # ignored positions, as GPT's padding of a short last window
    expected = F.cross_entropy(hidden @ weight.T, targets, ignore_index=-1)
    want = torch.autograd.grad(expected, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets, ignore_index=-1, chunk_rows=chunk_rows)
    got = torch.autograd.grad(loss * 3.0, (hidden, weight))  # the upstream gradient scales both
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(got[0], 3.0 * want[0])
    torch.testing.assert_close(got[1], 3.0 * want[1])


def test_without_gradients_gives_the_same_loss_and_no_graph():
    hidden, weight, targets = _pair(seed=1)
    with torch.no_grad():
        loss = linear_cross_entropy(hidden, weight, targets, chunk_rows=10)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(hidden @ weight.T, targets))


def test_all_targets_ignored_gives_zero_loss_and_zero_gradients():
    hidden, weight, targets = _pair(seed=2)
    loss = linear_cross_entropy(hidden, weight, torch.full_like(targets, -100))
    loss.backward()
    assert loss.item() == 0.0
    assert hidden.grad.abs().max() == 0 and weight.grad.abs().max() == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpt_training_loss_without_logits_equals_the_full_one(variant):
    """``return_logits=False`` (what training and validation use) changes nothing but the
    memory: the same loss and the same gradient on every parameter, the tied embedding
    included."""
    model = tiny(**VARIANTS[variant]).double()
    idx, targets = torch.randint(0, 97, (3, 16)), torch.randint(0, 97, (3, 16))
    targets[:, -3:] = -1
    logits, full = model(idx, targets)
    want = torch.autograd.grad(full, list(model.parameters()), allow_unused=True)
    none, sliced = model(idx, targets, return_logits=False)
    got = torch.autograd.grad(sliced, list(model.parameters()), allow_unused=True)
    assert none is None and logits is not None
    torch.testing.assert_close(sliced, full)
    for (name, _), g, w in zip(model.named_parameters(), got, want, strict=True):
        if w is None:
            assert g is None, name
        else:
            torch.testing.assert_close(g, w, msg=name)
