"""The Transformers' optimizer (``training/optim.py``): weight decay on matrices only,
warmup + cosine, and the fused AdamW only where Lightning can clip it."""

from __future__ import annotations

import math

import pytest

from llmworks.families.gpt.model import GPT
from llmworks.training.optim import param_groups, warmup_cosine

from conftest import gpt_config


def test_no_weight_decay_on_norms_biases_embeddings():
    gpt2_blocks = dict(pos="learned", norm="layernorm", mlp="gelu", bias=True)  # with biases
    model = GPT(gpt_config(50, block_size=8, n_layer=1, n_head=2, d_model=8, **gpt2_blocks))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {
        "blocks.0.attn.qkv.weight",
        "blocks.0.attn.proj.weight",
        "blocks.0.ffn.fc.weight",
        "blocks.0.ffn.proj.weight",
    }
    assert no_decay["weight_decay"] == 0.0
    n_total = len({id(p) for p in model.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_total


def test_warmup_then_cosine():
    lr = [warmup_cosine(s, 10, 110, 0.1) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr[110] == pytest.approx(0.1) and lr[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[9:], lr[10:], strict=False))


@pytest.mark.parametrize(
    ("precision", "clip", "fused"),
    [("bf16-mixed", 1.0, False), ("bf16-mixed", None, True), ("32-true", 1.0, True)],
)
def test_fused_adamw_only_where_lightning_can_clip_it(precision, clip, fused):
    """Lightning's AMP plugin refuses to clip gradients of the fused AdamW (found on an H100:
    trainer=gpu, bf16-mixed, gradient_clip_val 1.0 stopped the first step)."""
    import lightning as L

    from llmworks.training.optim import use_fused_adamw

    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        gradient_clip_val=clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    assert use_fused_adamw(True, trainer) is fused
    assert use_fused_adamw(False, trainer) is False
