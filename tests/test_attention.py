"""Attention heatmaps: ``Attention(return_weights=True)`` computes what SDPA computes (the
same output, and weights @ v through ``proj`` gives it), and ``attention_maps`` equals
Hugging Face's ``output_attentions`` (eager attention) for GPT-2, Llama, Mistral and BERT
exports of the same random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import TEXT, random_bert, random_gpt
from tokenizers import Tokenizer

from llmworks.evaluation.attention import attention_maps, token_labels
from llmworks.families.bert import hf as hf_bert
from llmworks.families.gpt import hf as hf_gpt
from llmworks.models.layers import Attention, RotaryEmbedding

# each on top of conf/gpt/default.yaml's model (Qwen3-shaped: the q/k norm only Qwen3 has)
GPT_VARIANTS = {
    "default_qwen3": {},
    "gpt2": dict(pos="learned", norm="layernorm", mlp="gelu", bias=True, qk_norm=False),
    "llama_gqa": dict(
        pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, qk_norm=False
    ),
    "mistral_window": dict(
        pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, window=5, qk_norm=False
    ),
}


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("variant", GPT_VARIANTS)
def test_gpt_rows_sum_to_one_and_nothing_above_the_diagonal(variant: str) -> None:
    model = random_gpt(**GPT_VARIANTS[variant])
    idx = torch.randint(0, 300, (12,))
    maps = attention_maps(model, idx)
    assert maps.shape == (2, 4, 12, 12) and maps.dtype.name == "float32"
    assert abs(maps.sum(-1) - 1).max() < 1e-5
    future = torch.ones(12, 12, dtype=torch.bool).triu(1).numpy()
    assert (maps[..., future] == 0).all()
    if variant == "mistral_window":  # each query sees only the last 5 positions
        too_old = torch.ones(12, 12, dtype=torch.bool).tril(-5).numpy()
        assert (maps[..., too_old] == 0).all()
    assert model.training is False


def test_bert_padded_keys_get_zero_weight_and_mode_is_restored() -> None:
    model = random_bert().train()
    idx = torch.randint(5, 300, (1, 10))
    mask = torch.arange(10) < 7
    maps = attention_maps(model, idx, padding_mask=mask)
    assert maps.shape == (2, 4, 10, 10)
    assert abs(maps.sum(-1) - 1).max() < 1e-5
    assert (maps[..., 7:] == 0).all()
    assert (maps[..., :7] > 0).all()  # bidirectional: every real key is seen, before and after
    assert model.training is True


@pytest.mark.parametrize(
    ("n_kv_head", "rope", "causal"),
    [(4, False, True), (2, False, True), (2, True, True), (1, True, False)],
    ids=["mha", "gqa", "gqa_rope", "mqa_rope_bidirectional"],
)
def test_weights_times_values_through_proj_is_forward(n_kv_head, rope, causal) -> None:
    torch.manual_seed(0)
    attn = Attention(32, 4, n_kv_head, bias=True, causal=causal).eval()
    B, T, hd = 2, 9, 8
    x = torch.randn(B, T, 32)
    cos_sin = RotaryEmbedding(hd)(0, T, x.dtype) if rope else None
    with torch.no_grad():
        explicit, w = attn(x, cos_sin, return_weights=True)
        v = attn.qkv(x).split([4 * hd, n_kv_head * hd, n_kv_head * hd], dim=-1)[2]
        v = v.view(B, T, n_kv_head, hd).transpose(1, 2).repeat_interleave(4 // n_kv_head, dim=1)
        y = attn.proj((w @ v).transpose(1, 2).reshape(B, T, 32))
        want = attn(x, cos_sin)  # the fused SDPA path
    assert w.shape == (B, 4, T, T)
    assert (y - want).abs().max().item() <= 1e-5
    assert (explicit - want).abs().max().item() <= 1e-5


# ----------------------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize("variant", GPT_VARIANTS)
def test_gpt_maps_equal_hf_output_attentions(variant: str, bpe_json: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = random_gpt(**GPT_VARIANTS[variant])
    out = hf_gpt.export_hf(model, bpe_json, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    idx = torch.tensor(Tokenizer.from_file(str(bpe_json)).encode(TEXT[0]).ids[:24])
    assert len(idx) > 5  # longer than the Mistral window
    with torch.no_grad():
        theirs = hf(idx[None], output_attentions=True).attentions
    ours = attention_maps(model, idx)
    assert len(theirs) == ours.shape[0] == model.config.n_layer
    for layer, t in enumerate(theirs):
        assert abs(ours[layer] - t[0].numpy()).max() <= 1e-5, f"layer {layer}"


@pytest.mark.parametrize(
    ("norm", "pos"), [("post", "learned"), ("pre", "learned"), ("post", "rope")]
)
def test_bert_maps_equal_hf_output_attentions_with_padding(
    norm: str, pos: str, wordpiece_json: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForMaskedLM

    tok = Tokenizer.from_file(str(wordpiece_json))
    model = random_bert(vocab=tok.get_vocab_size(), norm=norm, pos=pos)
    out = hf_bert.export_hf(model, wordpiece_json, tmp_path / "hf")
    hf = AutoModelForMaskedLM.from_pretrained(out, attn_implementation="eager").eval()
    real = tok.encode(TEXT[2]).ids
    idx = torch.tensor(real + [tok.token_to_id("[PAD]")] * 4)
    mask = torch.arange(len(idx)) < len(real)
    with torch.no_grad():
        theirs = hf(input_ids=idx[None], attention_mask=mask[None].long(), output_attentions=True)
    ours = attention_maps(model, idx, padding_mask=mask)
    assert len(theirs.attentions) == ours.shape[0] == model.config.n_layer
    assert (ours[..., len(real) :] == 0).all()
    for layer, t in enumerate(theirs.attentions):
        assert abs(ours[layer] - t[0].numpy()).max() <= 1e-5, f"layer {layer}"


# ----------------------------------------------------------------------------- labels


def test_token_labels_are_readable(bpe_json: Path, wordpiece_json: Path) -> None:
    bpe = Tokenizer.from_file(str(bpe_json))
    ids = bpe.encode("The cat\nsat é<|endoftext|>").ids
    labels = token_labels(bpe, torch.tensor(ids))
    assert labels[0] == "The" and "▁c" in labels[1] and "\\n" in labels
    assert "".join(labels).replace("▁", " ").replace("\\n", "\n").endswith("<|endoftext|>")
    assert "Ã" in labels  # half of "é": its byte-level symbol, not a replacement character
    wp = Tokenizer.from_file(str(wordpiece_json))
    enc = wp.encode("unbelievably mathematics")
    labels = token_labels(wp, enc.ids)
    assert labels == enc.tokens and labels[0] == "[CLS]" and any(t.startswith("##") for t in labels)
    assert token_labels(wp, [10**6]) == ["<1000000>"]
