"""The GPT model and its layers: shapes, variants, KV-cached generation, sampling."""

from __future__ import annotations

import pytest
import torch

from llmworks.models.gpt import GPT, sample
from llmworks.models.layers import MLP, Attention, MoE

from conftest import gpt_config

VARIANTS = {
    "classic": dict(),
    "llama_gqa": dict(
        pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, tie_weights=False
    ),
    "mqa_window": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1, bias=False, window=8),
    "moe": dict(
        pos="rope",
        norm="rmsnorm",
        mlp="moe",
        n_expert=4,
        top_k=2,
        n_kv_head=2,
        bias=False,
        tie_weights=False,
    ),
}


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = gpt_config(97, block_size=32, n_layer=2, n_head=4, d_model=32, **kw)
    return GPT(cfg).eval()


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


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_and_uncached_greedy_generation_agree(variant):
    model = tiny(**VARIANTS[variant])
    prompt = torch.randint(0, 97, (2, 5))
    cached = model.generate(prompt, 20, temperature=0.0, use_cache=True)
    uncached = model.generate(prompt, 20, temperature=0.0, use_cache=False)
    assert cached.shape == (2, 25)
    assert torch.equal(cached, uncached)


def test_gqa_cache_holds_only_kv_heads():
    model = tiny(**VARIANTS["llama_gqa"])
    model.set_kv_cache(1)
    assert model.blocks[0].attn.kv_cache.k.shape == (1, 2, 32, 8)
    model.clear_kv_cache()
    assert model.blocks[0].attn.kv_cache is None


def test_generation_past_block_size_keeps_going():
    model = tiny()
    out = model.generate(torch.zeros(1, 4, dtype=torch.long), 60, temperature=0.0)
    assert out.shape == (1, 64)


def test_seeded_sampling_is_reproducible():
    model = tiny(**VARIANTS["llama_gqa"])
    prompt = torch.randint(0, 97, (1, 4))
    runs = [
        model.generate(
            prompt,
            16,
            temperature=0.9,
            top_k=20,
            top_p=0.9,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    other = model.generate(prompt, 16, temperature=0.9, generator=torch.Generator().manual_seed(8))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other)


def test_stop_token_ends_generation():
    model = tiny()
    prompt = torch.zeros(1, 3, dtype=torch.long)
    greedy = model.generate(prompt, 10, temperature=0.0)
    stop = int(greedy[0, 5])
    out = model.generate(prompt, 10, temperature=0.0, stop_token=stop)
    assert out[0, -1].item() == stop and out.shape[1] <= 6


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[4.0, 3.0, 2.0, -10.0]])
    g = torch.Generator().manual_seed(0)
    picks = {int(sample(logits, 1.0, top_k=2, generator=g)) for _ in range(200)}
    assert picks == {0, 1}
    picks = {int(sample(logits, 1.0, top_p=0.5, generator=g)) for _ in range(200)}
    assert picks == {0}
    assert int(sample(logits, 0.0)) == 0


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
