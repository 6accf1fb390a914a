"""GPT to and from Hugging Face ``transformers``, both ways and to the same numbers.

Export (``to_hf``, ``export_hf``) picks the architecture that computes exactly what a config
says -- the one it was imported from (``hf_type``) or else the simplest:

- learned positions + LayerNorm + GELU, MHA, no window -> ``GPT2LMHeadModel``
- RoPE + RMSNorm + SwiGLU -> ``LlamaForCausalLM``; with a sliding window
  ``MistralForCausalLM``; with biases on q/k/v alone ``Qwen2ForCausalLM``; with q/k norms
  ``Qwen3ForCausalLM``; ``Phi3ForCausalLM`` (fused ``qkv_proj`` and ``gate_up_proj``) when
  imported from one
- RoPE + RMSNorm + a mixture of SwiGLU experts -> ``MixtralForCausalLM``

Import (``config_from_hf``, ``from_hf``) is the inverse: a checkpoint of one of those
classes, a hub id or a directory, becomes our ``GPT`` with the same logits. An architecture
or an option we do not compute exactly (another activation, another rope scaling, a partial
rotary, per-layer windows, ...) is refused in one line naming it and what is supported; it is
never approximated. Weights are read one tensor at a time into a model allocated once
(``llmworks.models.checkpoints``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from llmworks.errors import LlmworksError
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.models.checkpoints import Weights, load_state
from llmworks.models.hub import read_config, resolve
from llmworks.paths import TOKENIZER_FILE
from llmworks.spec import Built, require_exportable
from llmworks.tokenization.files import read_tokenizer

EOT, PAD, UNK = "<|endoftext|>", "[PAD]", "[UNK]"
CLASSES = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "mixtral": "MixtralForCausalLM",
}
SUPPORTED = ", ".join(CLASSES.values())
ROPE_TYPES = ("default", "llama3")
# tensors of a checkpoint that hold no weights (old GPT-2 files keep their causal masks)
IGNORED = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq", ".position_ids")

# ----------------------------------------------------------------------------- configs


def hf_architecture(cfg: GPTConfig) -> str:
    """The transformers ``model_type`` that computes what ``cfg`` says: ``cfg.hf_type`` when
    set (checked), else the simplest match; raises naming the switch that has none."""
    if cfg.pos == "learned" and cfg.norm == "layernorm" and cfg.mlp == "gelu":
        arch = "gpt2"
    elif cfg.pos == "rope" and cfg.norm == "rmsnorm" and cfg.mlp in ("swiglu", "moe"):
        arch = cfg.hf_type or _simplest_llama_like(cfg)
    else:
        raise LlmworksError(
            f"no Hugging Face architecture for pos={cfg.pos} norm={cfg.norm} mlp={cfg.mlp}: "
            "use learned+layernorm+gelu (GPT-2) or rope+rmsnorm+swiglu|moe (Llama/Mixtral)"
        )
    if cfg.hf_type is not None and cfg.hf_type != arch:
        raise LlmworksError(f"hf_type={cfg.hf_type!r} does not fit a {arch}-shaped model")
    problem = _unexpressible(cfg, arch)
    if problem:
        raise LlmworksError(f"{CLASSES.get(arch, arch)} export needs {problem}")
    return arch


def _simplest_llama_like(cfg: GPTConfig) -> str:
    if cfg.mlp == "moe":
        return "mixtral"
    if cfg.qk_norm:
        return "qwen3"
    if cfg.qkv_bias and not cfg.bias:
        return "qwen2"
    return "mistral" if cfg.window is not None else "llama"


def _unexpressible(cfg: GPTConfig, arch: str) -> str | None:
    """What of ``cfg`` the architecture cannot express (None: everything fits)."""
    if arch not in CLASSES:
        return f"one of {sorted(CLASSES)} as hf_type, not {arch!r}"
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    plain_heads = cfg.head_dim == cfg.d_model // cfg.n_head
    if arch == "gpt2":
        if cfg.n_kv_head != cfg.n_head or cfg.window is not None:
            return "n_kv_head == n_head and window: null"
        if qkv_bias != cfg.bias or cfg.qk_norm or not plain_heads:
            return "the same biases everywhere, no q/k norm and head_dim = d_model / n_head"
        return None
    if cfg.qk_norm != (arch == "qwen3"):
        return "qk_norm: true" if arch == "qwen3" else "qk_norm: false"
    if arch == "llama":
        return (
            None
            if qkv_bias == cfg.bias and cfg.window is None
            else "window: null and one bias switch"
        )
    if arch == "qwen2":
        ok = qkv_bias and not cfg.bias and cfg.window is None and plain_heads
        return (
            None if ok else "qkv_bias: true, bias: false, window: null, head_dim = d_model / n_head"
        )
    if cfg.bias or qkv_bias:
        return "bias: false (no biases anywhere)"
    if arch == "qwen3" and cfg.window is not None:
        return "window: null"
    if arch == "phi3" and not plain_heads:
        return "head_dim = d_model / n_head"
    return None


def _rope_parameters(cfg: GPTConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"rope_type": "default", "rope_theta": float(cfg.rope_base)}
    if cfg.rope_scaling is not None:
        scaling = dict(cfg.rope_scaling)
        params |= {"rope_type": scaling.pop("type")} | scaling
    return params


def _hf_config(cfg: GPTConfig, arch: str, special: dict[str, int | None]):
    import transformers as tf

    # no architecture's default special ids (Phi-3 pads with id 32000) unless they are given
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None} | special
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
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=cfg.norm_eps,
        hidden_act="silu",
        rope_parameters=_rope_parameters(cfg),
        attention_dropout=0.0,
        **common,
    )
    if arch == "llama":
        return tf.LlamaConfig(
            head_dim=cfg.head_dim, attention_bias=cfg.bias, mlp_bias=cfg.bias, **llama_like
        )
    if arch == "mistral":
        return tf.MistralConfig(head_dim=cfg.head_dim, sliding_window=cfg.window, **llama_like)
    if arch == "qwen2":
        return tf.Qwen2Config(use_sliding_window=False, **llama_like)
    if arch == "qwen3":
        return tf.Qwen3Config(
            head_dim=cfg.head_dim, attention_bias=False, use_sliding_window=False, **llama_like
        )
    if arch == "phi3":
        return tf.Phi3Config(
            original_max_position_embeddings=cfg.block_size,
            sliding_window=cfg.window,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            **llama_like,
        )
    return tf.MixtralConfig(
        head_dim=cfg.head_dim,
        num_local_experts=cfg.n_expert,
        num_experts_per_tok=cfg.top_k,
        router_aux_loss_coef=cfg.aux_loss_coef,
        router_jitter_noise=0.0,
        sliding_window=cfg.window,
        **llama_like,
    )


def config_from_hf(hf: Any, where: str = "checkpoint") -> GPTConfig:
    """Our config of a transformers causal-LM config; refuses, in one line, an architecture
    or option we would only approximate."""
    arch = getattr(hf, "model_type", None)
    if arch not in CLASSES:
        names = ", ".join(getattr(hf, "architectures", None) or [str(arch)])
        raise LlmworksError(
            f"{where}: {names} is not a causal LM we import; supported: {SUPPORTED}"
        )
    if arch == "gpt2":
        return _gpt2_config(hf, where)
    return _llama_like_config(hf, arch, where)


def _refuse(where: str, arch: str, option: str, supported: str) -> LlmworksError:
    return LlmworksError(f"{where}: {CLASSES[arch]} with {option} is not supported ({supported})")


def _gpt2_config(hf: Any, where: str) -> GPTConfig:
    if hf.activation_function != "gelu_new":
        raise _refuse(where, "gpt2", f"activation_function={hf.activation_function!r}", "gelu_new")
    for flag, want in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
    ):
        if bool(getattr(hf, flag, want)) != want:
            raise _refuse(where, "gpt2", f"{flag}={not want}", f"{flag}={want}")
    return GPTConfig(
        vocab_size=hf.vocab_size,
        block_size=hf.n_positions,
        n_layer=hf.n_layer,
        n_head=hf.n_head,
        n_kv_head=None,
        d_model=hf.n_embd,
        d_hidden=hf.n_inner or 4 * hf.n_embd,
        pos="learned",
        rope_base=10000.0,
        norm="layernorm",
        norm_eps=hf.layer_norm_epsilon,
        mlp="gelu",
        n_expert=8,
        top_k=2,
        aux_loss_coef=0.0,
        window=None,
        dropout=0.0,
        bias=True,
        tie_weights=bool(hf.tie_word_embeddings),
        hf_type="gpt2",
    )


def _llama_like_config(hf: Any, arch: str, where: str) -> GPTConfig:
    if hf.hidden_act != "silu":
        raise _refuse(where, arch, f"hidden_act={hf.hidden_act!r}", "silu")
    rope = dict(getattr(hf, "rope_parameters", None) or {})
    kind = rope.pop("rope_type", "default")
    if kind not in ROPE_TYPES:
        raise _refuse(where, arch, f"rope type {kind!r}", f"rope types {', '.join(ROPE_TYPES)}")
    base = float(rope.pop("rope_theta", 10000.0))
    if float(rope.pop("partial_rotary_factor", 1.0)) != 1.0:
        raise _refuse(where, arch, "a partial rotary factor", "rotary on the whole head")
    scaling = None
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = {"type": "llama3"} | {k: rope[k] for k in keys}
    window = None
    if arch in ("mistral", "mixtral", "phi3"):
        window = getattr(hf, "sliding_window", None)
    elif getattr(hf, "use_sliding_window", False):
        raise _refuse(where, arch, "use_sliding_window=true", "full attention in every layer")
    bias, qkv_bias = False, None
    if arch == "llama":
        if bool(hf.attention_bias) != bool(hf.mlp_bias):
            raise _refuse(where, arch, "attention_bias != mlp_bias", "both true or both false")
        bias = bool(hf.attention_bias)
    elif arch == "qwen2":
        qkv_bias = True  # Qwen2's q/k/v projections always have biases, the rest never
    elif getattr(hf, "attention_bias", False):
        raise _refuse(where, arch, "attention_bias=true", "attention_bias=false")
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    moe = arch == "mixtral"
    return GPTConfig(
        vocab_size=hf.vocab_size,
        block_size=hf.max_position_embeddings,
        n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads,
        n_kv_head=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        d_model=hf.hidden_size,
        d_hidden=hf.intermediate_size,
        pos="rope",
        rope_base=base,
        norm="rmsnorm",
        norm_eps=hf.rms_norm_eps,
        mlp="moe" if moe else "swiglu",
        n_expert=hf.num_local_experts if moe else 8,
        top_k=hf.num_experts_per_tok if moe else 2,
        aux_loss_coef=hf.router_aux_loss_coef if moe else 0.0,
        window=window,
        dropout=0.0,
        bias=bias,
        tie_weights=bool(hf.tie_word_embeddings),
        head_dim=head_dim,
        qkv_bias=qkv_bias,
        qk_norm=arch == "qwen3",
        rope_scaling=scaling,
        hf_type=arch,
    )


# ----------------------------------------------------------------------------- weight names
# One table per architecture, both ways: each of our parameters and the Hugging Face tensors
# it is the concatenation of, along its first dimension.

Parts = list[tuple[str, list[str]]]


def _llama_like_parts(cfg: GPTConfig, arch: str, moe_layout: str = "legacy") -> Parts:
    qkv_bias = cfg.bias if cfg.qkv_bias is None else cfg.qkv_bias
    parts: Parts = [("wte.weight", ["model.embed_tokens.weight"])]
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        attn = dst + "self_attn."
        parts += [
            (src + "norm1.weight", [dst + "input_layernorm.weight"]),
            (src + "norm2.weight", [dst + "post_attention_layernorm.weight"]),
            (src + "attn.proj.weight", [attn + "o_proj.weight"]),
        ]
        if arch == "phi3":
            parts.append((src + "attn.qkv.weight", [attn + "qkv_proj.weight"]))
        else:
            parts.append((src + "attn.qkv.weight", [attn + f"{p}_proj.weight" for p in "qkv"]))
        if qkv_bias:
            parts.append((src + "attn.qkv.bias", [attn + f"{p}_proj.bias" for p in "qkv"]))
        if cfg.bias:
            parts.append((src + "attn.proj.bias", [attn + "o_proj.bias"]))
        if cfg.qk_norm:
            parts += [
                (src + "attn.q_norm.weight", [attn + "q_norm.weight"]),
                (src + "attn.k_norm.weight", [attn + "k_norm.weight"]),
            ]
        if cfg.mlp == "moe":
            moe = dst + "block_sparse_moe."
            parts.append((src + "ffn.router.weight", [moe + "gate.weight"]))
            for j in range(cfg.n_expert):
                expert = f"{moe}experts.{j}."
                parts += [
                    (src + f"ffn.experts.{j}.gate.weight", [expert + "w1.weight"]),
                    (src + f"ffn.experts.{j}.up.weight", [expert + "w3.weight"]),
                    (src + f"ffn.experts.{j}.down.weight", [expert + "w2.weight"]),
                ]
            continue
        if arch == "phi3":
            parts += [
                (src + "ffn.gate.weight", [dst + "mlp.gate_up_proj.weight#0"]),
                (src + "ffn.up.weight", [dst + "mlp.gate_up_proj.weight#1"]),
            ]
        else:
            parts += [
                (src + "ffn.gate.weight", [dst + "mlp.gate_proj.weight"]),
                (src + "ffn.up.weight", [dst + "mlp.up_proj.weight"]),
            ]
        parts.append((src + "ffn.down.weight", [dst + "mlp.down_proj.weight"]))
        for ours, theirs in (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")):
            if cfg.bias:
                parts.append((src + f"ffn.{ours}.bias", [dst + f"mlp.{theirs}.bias"]))
    parts.append(("norm_f.weight", ["model.norm.weight"]))
    if not cfg.tie_weights:
        parts.append(("lm_head.weight", ["lm_head.weight"]))
    return parts


GPT2_TRANSPOSED = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def _gpt2_parts(cfg: GPTConfig, prefix: str = "transformer.") -> Parts:
    """GPT-2's names; its linears are ``Conv1D`` (weights ``(in, out)``: transposed)."""
    parts: Parts = [
        ("wte.weight", [prefix + "wte.weight"]),
        ("wpe.weight", [prefix + "wpe.weight"]),
    ]
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"{prefix}h.{i}."
        for ours, theirs in (
            ("norm1", "ln_1"),
            ("norm2", "ln_2"),
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("ffn.fc", "mlp.c_fc"),
            ("ffn.proj", "mlp.c_proj"),
        ):
            parts += [(f"{src}{ours}.{k}", [f"{dst}{theirs}.{k}"]) for k in ("weight", "bias")]
    parts += [(f"norm_f.{k}", [f"{prefix}ln_f.{k}"]) for k in ("weight", "bias")]
    if not cfg.tie_weights:
        parts.append(("lm_head.weight", ["lm_head.weight"]))
    return parts


def _parts(cfg: GPTConfig, arch: str, prefix: str = "transformer.") -> Parts:
    return _gpt2_parts(cfg, prefix) if arch == "gpt2" else _llama_like_parts(cfg, arch)


def _transposed(name: str) -> bool:
    return any(f".{t}.weight" in name for t in GPT2_TRANSPOSED)


# ----------------------------------------------------------------------------- export


def hf_state_dict(model: GPT, arch: str) -> dict[str, torch.Tensor]:
    """Our weights under the Hugging Face names of ``arch`` (float32, CPU), as its files
    hold them."""
    cfg = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    halves: dict[str, list[torch.Tensor]] = {}  # Phi-3's gate_up_proj: [gate, up]
    qkv_sizes = [cfg.n_head * cfg.head_dim] + [cfg.n_kv_head * cfg.head_dim] * 2
    for ours, theirs in _parts(cfg, arch):
        tensor = sd.get(ours)
        if tensor is None:  # GPT-2 always has biases: a model without them has zeros there
            tensor = torch.zeros(sd[ours.rsplit(".", 1)[0] + ".weight"].shape[0])
        if len(theirs) > 1:
            out |= dict(zip(theirs, (t.contiguous() for t in tensor.split(qkv_sizes)), strict=True))
        elif "#" in theirs[0]:
            name, half = theirs[0].split("#")
            halves.setdefault(name, [tensor, tensor])[int(half)] = tensor
        else:
            out[theirs[0]] = tensor.t().contiguous() if _transposed(theirs[0]) else tensor
    return out | {name: torch.cat(pair) for name, pair in halves.items()}


def to_hf(model: GPT, special: dict[str, int | None] | None = None):
    """The equivalent ``transformers`` causal LM (float32, CPU, eval mode), weights copied;
    ``model`` itself is left as it was."""
    import transformers as tf

    cfg = model.config
    arch = hf_architecture(cfg)
    hf = getattr(tf, CLASSES[arch])(_hf_config(cfg, arch, special or {}))
    state = hf_state_dict(model, arch)
    if arch == "mixtral":  # transformers 5 holds a layer's experts in two fused tensors
        state = _fused_experts(state, cfg)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (cfg.tie_weights and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"HF {arch} weight mapping incomplete: missing={missing} unexpected={unexpected}"
        )
    if cfg.tie_weights:
        hf.tie_weights()
    return hf.float().eval()


def _fused_experts(state: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in state.items() if ".block_sparse_moe." not in k}
    for i in range(cfg.n_layer):
        moe, dst = f"model.layers.{i}.block_sparse_moe.", f"model.layers.{i}.mlp."
        out[dst + "gate.weight"] = state[moe + "gate.weight"]
        experts = [f"{moe}experts.{j}." for j in range(cfg.n_expert)]
        gate_up = [torch.cat([state[e + "w1.weight"], state[e + "w3.weight"]]) for e in experts]
        out[dst + "experts.gate_up_proj"] = torch.stack(gate_up)
        out[dst + "experts.down_proj"] = torch.stack([state[e + "w2.weight"] for e in experts])
    return out


def hf_tokenizer(tokenizer_json: str | Path):
    """The trained ``tokenizers`` JSON as a ``PreTrainedTokenizerFast`` with GPT special tokens."""
    from transformers import PreTrainedTokenizerFast

    vocab = read_tokenizer(tokenizer_json).get_vocab()
    if EOT not in vocab:
        raise LlmworksError(f"{tokenizer_json} has no {EOT} token; train the GPT tokenizer with it")
    extra = {"pad_token": PAD} if PAD in vocab else {"pad_token": EOT}
    if UNK in vocab:
        extra["unk_token"] = UNK
    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), bos_token=EOT, eos_token=EOT, **extra
    )


def export_hf(
    model: GPT, tokenizer_json: str | Path, out_dir: str | Path, base: Path | None = None
) -> Path:
    """Write ``out_dir`` with ``save_pretrained`` for both the model and the tokenizer; a
    model continued from a ``base`` checkpoint keeps that checkpoint's tokenizer files (its
    special tokens and chat template)."""
    if base is not None and (base / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(base), trust_remote_code=False)
    else:
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
    """The stage's export into ``out_dir``: the matching ``transformers`` architecture and
    its tokenizer. An architecture without a counterpart is skipped with a warning
    (``require_exportable``)."""
    model = built.module.model
    require_exportable(hf_architecture, model.config)
    export_hf(model, built.files[TOKENIZER_FILE], out_dir, built.base)


# ----------------------------------------------------------------------------- import


def from_hf(
    source: str | Path, dtype: torch.dtype = torch.float32, where: str = "checkpoint"
) -> tuple[GPT, Path]:
    """Our ``GPT`` with the weights of a Hugging Face causal LM (a hub id or a directory),
    and the directory its files are in. The model is allocated once and filled tensor by
    tensor: peak memory stays near one copy of the weights."""
    path = resolve(source, where)
    cfg = config_from_hf(read_config(path), f"{where} {source}")
    weights = Weights(path)
    arch = cfg.hf_type
    prefix = "transformer." if any(n.startswith("transformer.") for n in weights.names()) else ""
    parts = _parts(cfg, arch, prefix)
    used = {n.split("#")[0] for _, theirs in parts for n in theirs}
    if cfg.tie_weights:
        used |= {"lm_head.weight"}  # some files store the tied head as well
    extra = sorted(n for n in weights.names() - used if not n.endswith(IGNORED))
    if extra:
        raise LlmworksError(
            f"{where} {source}: tensors we have no place for ({', '.join(extra[:4])}"
            f"{', ...' if len(extra) > 4 else ''}): not a {CLASSES[arch]} as we compute it"
        )
    model = load_state(lambda: GPT(cfg), _fills(parts, weights, cfg), dtype)
    return model, path


def _fills(
    parts: Parts, weights: Weights, cfg: GPTConfig
) -> Iterator[tuple[str, Callable[[torch.Tensor], None]]]:
    for ours, theirs in parts:

        def fill(param: torch.Tensor, theirs: list[str] = theirs) -> None:
            if len(theirs) == 1 and "#" in theirs[0]:  # half of a fused tensor
                name, half = theirs[0].split("#")
                param.copy_(weights.get(name).chunk(2)[int(half)])
            elif len(theirs) == 1 and _transposed(theirs[0]):
                param.copy_(weights.get(theirs[0]).t())
            elif len(theirs) == 1:
                weights.copy_into(theirs[0], param)
            else:  # q, k and v into our fused projection, row block by row block
                start = 0
                for name in theirs:
                    rows = weights.shape(name)[0]
                    weights.copy_into(name, param[start : start + rows])
                    start += rows

        yield ours, fill
