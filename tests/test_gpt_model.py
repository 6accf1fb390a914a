"""GPT's model (``families/gpt/model.py``) and its layers: shapes, variants, the KV cache."""

from __future__ import annotations

import pytest
import torch
from tiny import VARIANTS, tiny

from llmworks.families.gpt.model import GPT
from llmworks.models.layers import MLP, Attention, MoE, RotaryEmbedding

from conftest import gpt_config


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_loss(variant):
    model = tiny(**VARIANTS[variant])
    idx = torch.randint(0, 97, (2, 16))
    logits, loss = model(idx, targets=torch.randint(0, 97, (2, 16)))
    assert logits.shape == (2, 16, 97)
    # random init: loss close to uniform over the vocabulary
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5
    aux = model.aux_loss()
    assert (aux.item() > 0) == (variant == "moe")


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_matches_full_forward(variant):
    model = tiny(**VARIANTS[variant])
    idx = torch.randint(0, 97, (2, 20))
    full, _ = model(idx)
    model.set_kv_cache(2)
    steps = [model(idx[:, :12])[0]]
    for t in range(12, 20):
        steps.append(model(idx[:, t : t + 1], input_pos=t)[0])
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_rotary_table_slices_are_the_angles_of_their_positions():
    """The cos/sin table is computed once and sliced per call; a slice holds exactly what the
    positions' own angles are, however the table grew, in the dtype asked for."""
    rope = RotaryEmbedding(8)

    def angles(start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = torch.arange(start, end).float()[:, None] * rope.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    for start, end in [(0, 5), (5, 6), (6, 40), (3, 17), (39, 40)]:  # a decode grows the table
        for got, want in zip(rope(start, end, torch.float32), angles(start, end), strict=True):
            assert torch.equal(got, want)
    table = rope.table(40, torch.float32)[0]
    assert rope.table(10, torch.float32)[0] is table  # long enough: kept, not recomputed
    cos, _ = rope(2, 7, torch.bfloat16)
    assert cos.dtype == torch.bfloat16 and torch.equal(cos, angles(2, 7)[0].bfloat16())
    rope.reset_buffers()
    assert rope.table(10, torch.bfloat16)[0] is not table


def test_dropout_acts_in_training_only():
    model = tiny(dropout=0.5)
    idx = torch.randint(0, 97, (1, 8))
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_gqa_cache_holds_only_kv_heads():
    model = tiny(**VARIANTS["llama_gqa"])
    model.set_kv_cache(1)
    assert model.blocks[0].attn.kv_cache.k.shape == (1, 2, 32, 8)
    model.clear_kv_cache()
    assert model.blocks[0].attn.kv_cache is None


def test_sliding_window_limits_attention():
    torch.manual_seed(0)
    attn = Attention(16, 4, 2, window=3).eval()
    x = torch.randn(1, 10, 16)
    y = attn(x)
    x2 = x.clone()
    x2[:, :6] = torch.randn(1, 6, 16)  # position i sees only i-2..i
    assert torch.allclose(attn(x2)[:, 8:], y[:, 8:], atol=1e-6)
    assert not torch.allclose(attn(x2)[:, 7], y[:, 7])


def test_bidirectional_attention_with_padding_mask():
    torch.manual_seed(0)
    attn = Attention(16, 4, causal=False).eval()
    x = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    y = attn(x, padding_mask=mask)
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 16)  # changing padding changes nothing on real tokens
    assert torch.allclose(attn(x2, padding_mask=mask)[0, :4], y[0, :4], atol=1e-6)
    assert torch.allclose(attn(x[1:])[0, 0], y[1, 0], atol=1e-6)  # and sees the future
    assert MLP(16, 64)(x).shape == x.shape


def test_moe_balance_loss_and_all_experts_get_gradients():
    torch.manual_seed(0)
    moe = MoE(16, 32, n_expert=4, top_k=1)
    y = moe(torch.randn(3, 5, 16))
    (y.sum() + moe.aux_loss).backward()
    assert 0.5 < moe.aux_loss.item() < 4.0
    assert all(p.grad is not None for p in moe.parameters())


def test_scaled_residual_init_and_tying():
    model = GPT(gpt_config(97, block_size=32, n_layer=8, n_head=4, d_model=64))
    assert model.lm_head.weight is model.wte.weight
    std = model.blocks[0].attn.proj.weight.std().item()
    assert abs(std - 0.02 / 4) < 0.002


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_zero_init_proj_starts_every_branch_at_zero(mlp):
    """With zero_init_proj the blocks add nothing at first: the logits are the embeddings'
    alone, and the projections still learn (their gradients are not zero)."""
    model = GPT(gpt_config(97, block_size=16, n_layer=2, d_model=32, mlp=mlp, zero_init_proj=True))
    outputs = [b.attn.proj.weight for b in model.blocks]
    outputs += [b.ffn.proj.weight if mlp == "gelu" else b.ffn.down.weight for b in model.blocks]
    assert all(torch.count_nonzero(w) == 0 for w in outputs)
    idx = torch.randint(0, 97, (2, 16))
    x, rope = model.wte(idx), model.rope(0, 16, torch.float32)
    for block in model.blocks:
        assert torch.equal(block(x, rope, 0), x)
    loss = model(idx, targets=idx)[1]
    loss.backward()
    assert all(torch.count_nonzero(w.grad) > 0 for w in outputs)


def test_save_and_load_roundtrip(tmp_path):
    model = tiny(**VARIANTS["moe"])
    model.save(tmp_path)
    loaded = GPT.load(tmp_path)
    idx = torch.randint(0, 97, (1, 8))
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    tiny().save(tmp_path / "tied")
    tied = GPT.load(tmp_path / "tied")
    assert tied.lm_head.weight is tied.wte.weight
