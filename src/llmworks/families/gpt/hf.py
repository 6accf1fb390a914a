"""Export a trained GPT to Hugging Face ``transformers``: the proof that the model is right.

The config picks the architecture it is numerically identical to:

- learned positions + LayerNorm + GELU, MHA, no window -> ``GPT2LMHeadModel``
- RoPE + RMSNorm + SwiGLU (any MHA/GQA/MQA) -> ``LlamaForCausalLM`` (``MistralForCausalLM``
  when it uses a sliding window)
- RoPE + RMSNorm + MoE of SwiGLU experts -> ``MixtralForCausalLM``

Anything else raises ``LlmworksError`` naming the switch that has no HF counterpart.
``export_hf(model, tokenizer_json, out_dir)`` writes ``save_pretrained`` output (safetensors)
plus the tokenizer as a ``PreTrainedTokenizerFast``, loadable with
``AutoModelForCausalLM.from_pretrained(out_dir)`` and ``pipeline("text-generation", out_dir)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmworks.errors import LlmworksError
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.paths import TOKENIZER_FILE
from llmworks.spec import Built, require_exportable

EOT, PAD, UNK = "<|endoftext|>", "[PAD]", "[UNK]"


def hf_architecture(cfg: GPTConfig) -> str:
    """``"gpt2"``, ``"llama"``, ``"mistral"`` or ``"mixtral"``; raises if none matches."""
    if cfg.pos == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu":
        if cfg.n_kv_head != cfg.n_head or cfg.window is not None:
            raise LlmworksError("GPT-2 export needs n_kv_head == n_head and window: null")
        return "gpt2"
    if cfg.pos == "rope" and cfg.norm == "rmsnorm" and cfg.mlp in ("swiglu", "moe"):
        if cfg.mlp == "moe":
            if cfg.bias:
                raise LlmworksError("Mixtral export needs bias: false (its experts have no biases)")
            return "mixtral"
        if cfg.window is not None:
            if cfg.bias:
                raise LlmworksError("Mistral (sliding window) export needs bias: false")
            return "mistral"
        return "llama"
    raise LlmworksError(
        f"no Hugging Face architecture for pos={cfg.pos} norm={cfg.norm} mlp={cfg.mlp}: "
        "use learned+layernorm+gelu (GPT-2) or rope+rmsnorm+swiglu|moe (Llama/Mixtral)"
    )


def _hf_config(cfg: GPTConfig, arch: str, special: dict[str, int | None]):
    import transformers as tf

    common = dict(vocab_size=cfg.vocab_size, tie_word_embeddings=cfg.tie_weights, **special)
    if arch == "gpt2":
        return tf.GPT2Config(
            n_positions=cfg.block_size,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_inner=cfg.d_hidden,
            activation_function="gelu_new",
            layer_norm_epsilon=cfg.norm_eps,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    llama_like = dict(
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_kv_head,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_base)},
        attention_dropout=0.0,
        **common,
    )
    if arch == "llama":
        return tf.LlamaConfig(attention_bias=cfg.bias, mlp_bias=cfg.bias, **llama_like)
    if arch == "mistral":
        return tf.MistralConfig(sliding_window=cfg.window, **llama_like)
    return tf.MixtralConfig(
        num_local_experts=cfg.n_expert,
        num_experts_per_tok=cfg.top_k,
        router_aux_loss_coef=cfg.aux_loss_coef,
        router_jitter_noise=0.0,
        sliding_window=cfg.window,
        **llama_like,
    )


def _gpt2_state(model: GPT, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT-2 stores linears as ``Conv1D`` (weight ``(in, out)``) and always has biases."""
    out = {}

    def bias(key: str, n: int) -> torch.Tensor:
        return sd.get(key, torch.zeros(n))

    out["transformer.wte.weight"] = sd["wte.weight"]
    out["transformer.wpe.weight"] = sd["wpe.weight"]
    for i, b in enumerate(model.blocks):
        src, dst = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[dst + theirs + ".weight"] = sd[src + ours + ".weight"]
            out[dst + theirs + ".bias"] = bias(src + ours + ".bias", model.config.d_model)
        for ours, theirs, lin in (
            ("attn.qkv", "attn.c_attn", b.attn.qkv),
            ("attn.proj", "attn.c_proj", b.attn.proj),
            ("ffn.fc", "mlp.c_fc", b.ffn.fc),
            ("ffn.proj", "mlp.c_proj", b.ffn.proj),
        ):
            out[dst + theirs + ".weight"] = sd[src + ours + ".weight"].t().contiguous()
            out[dst + theirs + ".bias"] = bias(src + ours + ".bias", lin.out_features)
    out["transformer.ln_f.weight"] = sd["norm_f.weight"]
    out["transformer.ln_f.bias"] = bias("norm_f.bias", model.config.d_model)
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def _llama_state(model: GPT, sd: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    cfg, out = model.config, {}
    hd = cfg.head_dim
    q_k_v = [cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_kv_head * hd]
    out["model.embed_tokens.weight"] = sd["wte.weight"]
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        out[dst + "input_layernorm.weight"] = sd[src + "norm1.weight"]
        out[dst + "post_attention_layernorm.weight"] = sd[src + "norm2.weight"]
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            for name, t in zip(
                ("q_proj", "k_proj", "v_proj"),
                sd[src + f"attn.qkv.{kind}"].split(q_k_v, dim=0),
                strict=True,
            ):
                out[dst + f"self_attn.{name}.{kind}"] = t.contiguous()
            out[dst + f"self_attn.o_proj.{kind}"] = sd[src + f"attn.proj.{kind}"]
            if arch != "mixtral":
                for ours, theirs in (
                    ("gate", "gate_proj"),
                    ("up", "up_proj"),
                    ("down", "down_proj"),
                ):
                    out[dst + f"mlp.{theirs}.{kind}"] = sd[src + f"ffn.{ours}.{kind}"]
        if arch == "mixtral":
            e = range(cfg.n_expert)
            out[dst + "mlp.gate.weight"] = sd[src + "ffn.router.weight"]
            out[dst + "mlp.experts.gate_up_proj"] = torch.stack(
                [
                    torch.cat(
                        [
                            sd[src + f"ffn.experts.{j}.gate.weight"],
                            sd[src + f"ffn.experts.{j}.up.weight"],
                        ]
                    )
                    for j in e
                ]
            )
            out[dst + "mlp.experts.down_proj"] = torch.stack(
                [sd[src + f"ffn.experts.{j}.down.weight"] for j in e]
            )
    out["model.norm.weight"] = sd["norm_f.weight"]
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


def to_hf(model: GPT, special: dict[str, int | None] | None = None):
    """The equivalent ``transformers`` causal LM (float32, CPU, eval mode), weights copied;
    ``model`` itself is left as it was."""
    import transformers as tf

    cfg = model.config
    arch = hf_architecture(cfg)
    hf_cfg = _hf_config(cfg, arch, special or {})
    cls = {
        "gpt2": tf.GPT2LMHeadModel,
        "llama": tf.LlamaForCausalLM,
        "mistral": tf.MistralForCausalLM,
        "mixtral": tf.MixtralForCausalLM,
    }[arch]
    hf = cls(hf_cfg)
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    state = _gpt2_state(model, sd) if arch == "gpt2" else _llama_state(model, sd, arch)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (cfg.tie_weights and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"HF {arch} weight mapping incomplete: missing={missing} unexpected={unexpected}"
        )
    if cfg.tie_weights:
        hf.tie_weights()
    return hf.float().eval()


def hf_tokenizer(tokenizer_json: str | Path):
    """The trained ``tokenizers`` JSON as a ``PreTrainedTokenizerFast`` with GPT special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab()
    if EOT not in vocab:
        raise LlmworksError(f"{tokenizer_json} has no {EOT} token; train the GPT tokenizer with it")
    extra = {"pad_token": PAD} if PAD in vocab else {"pad_token": EOT}
    if UNK in vocab:
        extra["unk_token"] = UNK
    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), bos_token=EOT, eos_token=EOT, **extra
    )


def export_hf(model: GPT, tokenizer_json: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` with ``save_pretrained`` for both the model and the tokenizer."""
    tok = hf_tokenizer(tokenizer_json)
    special = dict(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    hf = to_hf(model, special)
    hf.generation_config.pad_token_id = tok.pad_token_id
    out_dir = Path(out_dir)
    hf.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def export(built: Built, out_dir: Path) -> None:
    """The stage's export into ``out_dir``: the matching ``transformers`` architecture and a fast tokenizer. An architecture without a
    counterpart is skipped with a warning (``require_exportable``)."""
    model = built.module.model
    require_exportable(hf_architecture, model.config)
    export_hf(model, built.files[TOKENIZER_FILE], out_dir)
