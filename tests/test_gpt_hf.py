"""GPT's Hugging Face mapping (``families/gpt/hf.py``) on random weights: same logits (float32,
<= 1e-4), same greedy tokens, and an export directory that AutoModelForCausalLM and
pipeline("text-generation") load."""

from __future__ import annotations

import pytest
import torch
from tiny import random_gpt

from llmworks.errors import LlmworksError
from llmworks.families.gpt.hf import export_hf, hf_architecture, to_hf
from llmworks.generation import generate

from conftest import gpt_config

VOCAB = 300
GPT2 = dict(pos="learned", norm="layernorm", mlp="gelu", bias=True)
VARIANTS = {
    "gpt2": GPT2,
    "gpt2_untied_nobias": GPT2 | dict(bias=False, tie_weights=False),
    "llama": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False),
    "llama_mqa_bias": dict(
        pos="rope",
        norm="rmsnorm",
        mlp="swiglu",
        n_kv_head=1,
        bias=True,
        tie_weights=False,
        rope_base=500.0,
    ),
    "mistral_window": dict(
        pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, window=6
    ),
    "mixtral": dict(
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
ARCH = {
    "gpt2": "GPT2LMHeadModel",
    "gpt2_untied_nobias": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "llama_mqa_bias": "LlamaForCausalLM",
    "mistral_window": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_and_greedy_generation_match_hf(variant):
    model = random_gpt(**VARIANTS[variant])
    hf = to_hf(model)
    assert type(hf).__name__ == ARCH[variant]
    idx = torch.randint(0, VOCAB, (2, 24))
    with torch.no_grad():
        ours = model(idx)[0]
        theirs = hf(idx).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    prompt = idx[:1, :5]
    want = generate(model, prompt, 20, temperature=0.0)
    got = hf.generate(
        prompt,
        max_new_tokens=20,
        do_sample=False,
        min_new_tokens=20,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert torch.equal(want, got)


@pytest.mark.parametrize(
    ("penalty", "ngram"), [(1.0, 3), (1.5, 0), (0.8, 2)], ids=["ngram3", "penalty", "both"]
)
def test_repetition_constraints_decode_as_hf_generate(penalty: float, ngram: int):
    """A random model's greedy text loops; both cures must pick exactly the tokens that
    transformers' repetition_penalty / no_repeat_ngram_size pick."""
    model = random_gpt()
    hf = to_hf(model)
    prompt = torch.tensor([[5, 6, 7, 5, 6]])
    plain = generate(model, prompt, 40, temperature=0.0)
    want = generate(
        model, prompt, 40, temperature=0.0, repetition_penalty=penalty, no_repeat_ngram_size=ngram
    )
    got = hf.generate(
        prompt,
        max_new_tokens=40,
        do_sample=False,
        min_new_tokens=40,
        pad_token_id=0,
        eos_token_id=None,
        repetition_penalty=penalty,
        no_repeat_ngram_size=ngram,
    )
    assert torch.equal(want, got)
    assert not torch.equal(want, plain)  # the constraint did bind
    if ngram:  # no generated token completes an n-gram seen before (the prompt may repeat)
        grams = want[0].unfold(0, ngram, 1).tolist()
        first_new = prompt.shape[1] - ngram + 1
        assert all(grams[i] not in grams[:i] for i in range(first_new, len(grams)))


def test_unsupported_combination_is_a_user_error():
    with pytest.raises(LlmworksError, match="no Hugging Face architecture"):
        hf_architecture(gpt_config(VOCAB, pos="rope", norm="layernorm"))


@pytest.mark.parametrize("variant", ["gpt2", "llama", "mixtral"])
def test_export_dir_loads_with_auto_classes_and_pipeline(variant, bpe_json, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    model = random_gpt(**VARIANTS[variant])
    out = export_hf(model, bpe_json, tmp_path / "hf")
    assert (out / "model.safetensors").is_file()
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.is_fast and tok.eos_token == "<|endoftext|>"
    ids = tok("The quick brown fox", return_tensors="pt").input_ids
    with torch.no_grad():
        assert (hf(ids).logits - model(ids)[0]).abs().max().item() <= 1e-4
    gen = pipeline("text-generation", model=str(out), tokenizer=str(out), device="cpu")
    text = gen("The quick", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    prompt = tok("The quick", return_tensors="pt").input_ids
    want = generate(model, prompt, 8, temperature=0.0, stop_token=tok.eos_token_id)
    assert text.startswith("The quick")
    assert text == tok.decode(want[0], skip_special_tokens=True)
