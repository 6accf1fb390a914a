"""Export a trained BERT to Hugging Face ``transformers``: the proof that the model is right.

Post-LN (``norm: post``, the original BERT) becomes ``BertForMaskedLM``; pre-LN becomes
``MegatronBertForMaskedLM``, the same blocks with the norm at each sublayer's entry and a
final norm; post-LN with rotary positions (``pos: rope``) becomes ``RoFormerForMaskedLM``,
BERT's blocks with queries and keys rotated (its "interleaved" channel pairs are ours,
"rotate half", reordered). Our fused ``qkv`` projection is split into
``query``/``key``/``value``; the ``[CLS]`` pooler is left out (``*ForMaskedLM`` has none).

``export_hf(model, tokenizer_json, out_dir)`` writes ``save_pretrained`` output (safetensors)
plus the WordPiece tokenizer as a ``PreTrainedTokenizerFast``, loadable with
``AutoModelForMaskedLM.from_pretrained(out_dir)`` and ``pipeline("fill-mask", out_dir)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmworks.errors import LlmworksError
from llmworks.families.bert.model import Bert, BertConfig
from llmworks.paths import TOKENIZER_FILE
from llmworks.spec import Built, require_exportable

SPECIAL = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def _hf_config(cfg: BertConfig, arch: str):
    import transformers as tf

    kwargs = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.d_hidden,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_seq_len,
        type_vocab_size=cfg.type_vocab_size,
        layer_norm_eps=cfg.norm_eps,
        pad_token_id=cfg.pad_id,
        tie_word_embeddings=True,
    )
    if arch == "roformer":
        return tf.RoFormerConfig(embedding_size=cfg.d_model, rotary_value=False, **kwargs)
    return tf.BertConfig(**kwargs) if arch == "bert" else tf.MegatronBertConfig(**kwargs)


def hf_architecture(cfg: BertConfig) -> str:
    """``"bert"``, ``"megatron-bert"`` or ``"roformer"``; raises if none computes the same."""
    if cfg.pos == "learned":
        return "bert" if cfg.norm == "post" else "megatron-bert"
    if cfg.norm != "post":
        raise LlmworksError(
            "bert.model.pos=rope with norm=pre has no Hugging Face counterpart (RoFormer is "
            "post-LN): set bert.model.norm=post or bert.export=false"
        )
    if cfg.rope_base != 10000.0:
        raise LlmworksError(
            f"bert.model.rope_base={cfg.rope_base}: RoFormer's rotary base is fixed at 10000"
        )
    return "roformer"


def _interleave_rotary_pairs(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Reorder each head's query/key rows from our rotary layout (channel ``i`` pairs with
    ``i + head_dim/2``) to RoFormer's (``2i`` pairs with ``2i+1``): the same dot products."""
    head_dim = w.shape[0] // n_head
    half = torch.arange(head_dim // 2)
    order = torch.stack((half, half + head_dim // 2), dim=1).flatten()
    return w.view(n_head, head_dim, *w.shape[1:])[:, order].reshape(w.shape)


def hf_state_dict(model: Bert) -> dict[str, torch.Tensor]:
    """Our weights under Hugging Face's names (``bert.*`` or ``roformer.*`` encoder,
    ``cls.predictions.*`` head)."""
    cfg, out = model.config, {}
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    post, rope = cfg.norm == "post", cfg.pos == "rope"
    emb = "bert.embeddings."
    out[emb + "word_embeddings.weight"] = sd["embeddings.tok.weight"]
    if not rope:
        out[emb + "position_embeddings.weight"] = sd["embeddings.pos.weight"]
    out[emb + "token_type_embeddings.weight"] = sd["embeddings.seg.weight"]
    # (HF name, ours) for the norms: post-LN after each residual add, pre-LN at each entry
    norms = (
        (("attention.output.LayerNorm", "norm1"), ("output.LayerNorm", "norm2"))
        if post
        else (("attention.ln", "norm1"), ("ln", "norm2"))
    )
    if post:
        norms_top = (("bert.embeddings.LayerNorm", "embeddings.norm"),)
    else:
        norms_top = (("bert.encoder.ln", "norm_f"),)
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"bert.encoder.layer.{i}."
        for kind in ("weight", "bias"):
            for name, t in zip(
                ("query", "key", "value"), sd[src + f"attn.qkv.{kind}"].chunk(3, dim=0), strict=True
            ):
                if rope and name != "value":
                    t = _interleave_rotary_pairs(t, cfg.n_head)
                out[dst + f"attention.self.{name}.{kind}"] = t.contiguous()
            out[dst + f"attention.output.dense.{kind}"] = sd[src + f"attn.proj.{kind}"]
            out[dst + f"intermediate.dense.{kind}"] = sd[src + f"mlp.fc.{kind}"]
            out[dst + f"output.dense.{kind}"] = sd[src + f"mlp.proj.{kind}"]
            for theirs, ours in norms:
                out[dst + f"{theirs}.{kind}"] = sd[src + f"{ours}.{kind}"]
    for kind in ("weight", "bias"):
        for theirs, ours in norms_top:
            out[f"{theirs}.{kind}"] = sd[f"{ours}.{kind}"]
        out[f"cls.predictions.transform.dense.{kind}"] = sd[f"head.dense.{kind}"]
        out[f"cls.predictions.transform.LayerNorm.{kind}"] = sd[f"head.norm.{kind}"]
    out["cls.predictions.decoder.weight"] = sd["embeddings.tok.weight"]
    out["cls.predictions.decoder.bias"] = sd["head.decoder.bias"]
    out["cls.predictions.bias"] = sd["head.decoder.bias"]
    if rope:  # RoFormer: the same encoder under another name
        out = {k.replace("bert.", "roformer.", 1): v for k, v in out.items()}
    return out


def to_hf(model: Bert):
    """The equivalent ``transformers`` masked LM (float32, eval mode), weights copied."""
    import transformers as tf

    cfg = model.config
    classes = {
        "bert": tf.BertForMaskedLM,
        "megatron-bert": tf.MegatronBertForMaskedLM,
        "roformer": tf.RoFormerForMaskedLM,
    }
    arch = hf_architecture(cfg)
    hf = classes[arch](_hf_config(cfg, arch))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    # RoFormer's sinusoidal table is computed, not trained: nothing of ours maps onto it
    missing = [k for k in missing if not k.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"HF BERT weight mapping incomplete: missing={missing} unexpected={unexpected}"
        )
    hf.tie_weights()
    return hf.float().eval()


def hf_tokenizer(tokenizer_json: str | Path, max_len: int):
    """The trained WordPiece ``tokenizer.json`` as a ``PreTrainedTokenizerFast`` with BERT's
    special tokens (its post-processor already frames ``[CLS] ... [SEP]``)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab()
    missing = [t for t in SPECIAL.values() if t not in vocab]
    if missing:
        raise LlmworksError(
            f"{tokenizer_json} has no {missing}; BERT needs the wordpiece tokenizer"
        )
    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json), model_max_length=max_len, **SPECIAL
    )


def export_hf(model: Bert, tokenizer_json: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` with ``save_pretrained`` (safetensors) for the model and tokenizer."""
    tok = hf_tokenizer(tokenizer_json, model.config.max_seq_len)
    if tok.vocab_size != model.config.vocab_size and len(tok) != model.config.vocab_size:
        raise LlmworksError(
            f"{tokenizer_json} has {len(tok)} tokens but the model "
            f"{model.config.vocab_size}: export with the tokenizer it was trained on"
        )
    hf = to_hf(model)
    out_dir = Path(out_dir)
    hf.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def export(built: Built, out_dir: Path) -> None:
    """The stage's export into ``out_dir``: ``BertForMaskedLM``, ``MegatronBertForMaskedLM`` (pre-LN) or ``RoFormerForMaskedLM`` (rotary positions), and its tokenizer. An architecture without a
    counterpart is skipped with a warning (``require_exportable``)."""
    model = built.module.model
    require_exportable(hf_architecture, model.config)
    export_hf(model, built.files[TOKENIZER_FILE], out_dir)
