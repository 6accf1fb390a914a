"""GPT's Hugging Face mapping (``families/gpt/hf.py``) on random weights, both ways. Export:
same logits (float32, <= 1e-4), same greedy tokens, and an export directory that
AutoModelForCausalLM and pipeline("text-generation") load. Import of every architecture we
read (Llama incl. Llama 3 rope scaling and tied embeddings, Mistral, Qwen2, Qwen3, Phi-3,
GPT-2, Mixtral): the same logits, the same greedy text through pipelines/generate.py, the
checkpoint back on export, and one line for what we would only approximate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import HF_CAUSAL, hf_checkpoint, random_gpt

from llmworks.errors import LlmworksError
from llmworks.families.gpt.hf import export_hf, from_hf, hf_architecture, hf_state_dict, to_hf
from llmworks.generation import generate

from conftest import gpt_config, run_stage

VOCAB = 300
GPT2 = dict(pos="learned", norm="layernorm", mlp="gelu", bias=True, qk_norm=False)
# each on top of conf/gpt/default.yaml's model, whose q/k norm only Qwen3 has
VARIANTS = {
    "default_qwen3": {},
    "gpt2": GPT2,
    "gpt2_untied_nobias": GPT2 | dict(bias=False, tie_weights=False),
    "llama": dict(pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, qk_norm=False),
    "llama_mqa_bias": dict(
        pos="rope",
        norm="rmsnorm",
        mlp="swiglu",
        n_kv_head=1,
        bias=True,
        tie_weights=False,
        rope_base=500.0,
        qk_norm=False,
    ),
    "mistral_window": dict(
        pos="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, window=6, qk_norm=False
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
        qk_norm=False,
    ),
}
ARCH = {
    "default_qwen3": "Qwen3ForCausalLM",
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


@pytest.mark.parametrize("variant", ["gpt2", "llama", "mixtral", "default_qwen3"])
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


# ----------------------------------------------------------------------------- import


def padded(vocab: int = VOCAB, length: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences, the second right-padded after 25 tokens: ``(ids, attention mask)``."""
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(6, vocab, (2, length), generator=g)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, 25:] = False
    idx[~mask] = 0
    return idx, mask


@pytest.mark.parametrize("kind", HF_CAUSAL)
def test_an_imported_checkpoint_gives_the_same_logits(kind: str, tmp_path: Path) -> None:
    """Padded and unpadded, 40 positions: past the rope-scaled model's original 16, past the
    sliding windows of Mistral (7) and Phi-3 (9)."""
    hf = hf_checkpoint(kind, tmp_path)
    model, files = from_hf(tmp_path)
    assert files == tmp_path and model.config.hf_type == hf.config.model_type
    idx, mask = padded()
    with torch.no_grad():
        ours = model(idx)[0]
        theirs = hf(input_ids=idx, attention_mask=mask.long()).logits
        alone = model(idx[:1])[0] - hf(input_ids=idx[:1]).logits
    assert (ours - theirs)[mask].abs().max().item() <= 1e-4
    assert alone.abs().max().item() <= 1e-4


@pytest.mark.parametrize("kind", HF_CAUSAL)
def test_exporting_an_import_gives_back_the_checkpoint(kind: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    hf = hf_checkpoint(kind, tmp_path)
    model, _ = from_hf(tmp_path)
    assert type(to_hf(model)).__name__ == type(hf).__name__  # the same architecture
    got = hf_state_dict(model, model.config.hf_type)
    want = load_file(tmp_path / "model.safetensors")
    if model.config.tie_weights:
        want.pop("lm_head.weight", None)
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k].float()) for k in want), kind


@pytest.mark.parametrize(
    ("kind", "chat"), [("llama", False), ("qwen2", False), ("phi3", True), ("gpt2", False)]
)
def test_generate_py_decodes_a_checkpoint_as_hf_generate(
    kind: str, chat: bool, bpe_json: Path, tmp_path: Path
) -> None:
    """``pipelines/generate.py checkpoint=<dir> temperature=0``, with and without the KV
    cache, writes what ``generate(do_sample=False)`` decodes, token for token."""
    from transformers import AutoTokenizer

    ckpt = tmp_path / "ckpt"
    hf = hf_checkpoint(kind, ckpt, tokenizer=bpe_json)
    tok = AutoTokenizer.from_pretrained(ckpt)
    if chat:
        tok.chat_template = "{% for m in messages %}[CLS]{{ m['content'] }}[SEP]{% endfor %}"
        tok.save_pretrained(ckpt)
    prompt = "The quick brown fox"
    if chat:
        messages = [{"role": "user", "content": prompt}]
        chat_ids = tok.apply_chat_template(messages, add_generation_prompt=True)
        ids = torch.tensor([list(chat_ids["input_ids"] if hasattr(chat_ids, "keys") else chat_ids)])
    else:
        ids = tok(prompt, return_tensors="pt").input_ids
    want = hf.generate(ids, max_new_tokens=24, do_sample=False, min_new_tokens=24, pad_token_id=0)
    text = tok.decode(want[0, ids.shape[1] :], skip_special_tokens=True)
    for cache in ("true", "false"):
        proc = run_stage(
            "generate", f"checkpoint={ckpt}", f"prompt={prompt}", "temperature=0",
            "max_new_tokens=24", "stop_at_eot=false", f"use_cache={cache}", f"chat={chat}",
            f"hydra.run.dir={tmp_path / 'h'}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout == prompt + ("\n" if chat else "") + text + "\n", cache


def test_what_we_do_not_compute_exactly_is_refused_in_one_line(tmp_path: Path) -> None:
    import transformers as tf

    from llmworks.families.gpt.hf import config_from_hf

    neox = tf.GPTNeoXConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4)
    with pytest.raises(
        LlmworksError, match="not a causal LM we import; supported: GPT2LMHeadModel"
    ):
        config_from_hf(neox)
    yarn = tf.LlamaConfig(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0})
    with pytest.raises(LlmworksError, match="rope type 'yarn' is not supported .*llama3"):
        config_from_hf(yarn)
    windowed = tf.Qwen2Config(use_sliding_window=True, sliding_window=16)
    with pytest.raises(LlmworksError, match="use_sliding_window=true is not supported"):
        config_from_hf(windowed)
    gelu = tf.MistralConfig(hidden_act="gelu")
    with pytest.raises(LlmworksError, match="hidden_act='gelu' is not supported"):
        config_from_hf(gelu)
