"""BERT to and from Hugging Face ``transformers``, both ways and to the same numbers.

Post-LN (``norm: post``, the original BERT) is ``BertForMaskedLM``; pre-LN is
``MegatronBertForMaskedLM``, the same blocks with the norm at each sublayer's entry and a
final norm; post-LN with rotary positions (``pos: rope``) is ``RoFormerForMaskedLM``, BERT's
blocks with queries and keys rotated (its "interleaved" channel pairs are ours, "rotate
half", reordered). Our fused ``qkv`` projection is ``query``/``key``/``value``; the ``[CLS]``
pooler is left out of an export (``*ForMaskedLM`` has none) and read from an imported
checkpoint when it has one (``bert-base-uncased`` does).

``export_hf(model, tokenizer_json, out_dir)`` writes ``save_pretrained`` output (safetensors)
plus the WordPiece tokenizer as a ``PreTrainedTokenizerFast``, loadable with
``AutoModelForMaskedLM.from_pretrained(out_dir)`` and ``pipeline("fill-mask", out_dir)``.
``from_hf(source)`` reads such a checkpoint (a hub id or a directory) into our ``Bert``; an
option we would only approximate is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from llmworks.errors import LlmworksError
from llmworks.families.bert.model import Bert, BertConfig
from llmworks.models.checkpoints import Weights, load_state
from llmworks.models.hub import read_config, resolve
from llmworks.paths import TOKENIZER_FILE
from llmworks.spec import Built, require_exportable
from llmworks.tokenization.files import read_tokenizer

CLASSES = {
    "bert": "BertForMaskedLM",
    "megatron-bert": "MegatronBertForMaskedLM",
    "roformer": "RoFormerForMaskedLM",
}
SUPPORTED = ", ".join(CLASSES.values())
# heads and tables of a checkpoint that our MLM does not hold: next-sentence prediction,
# RoFormer's sinusoidal table (computed, not trained), position ids
IGNORED = ("cls.seq_relationship.weight", "cls.seq_relationship.bias", "embed_positions.weight",
           "position_ids")  # fmt: skip

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


def _rotary_order(head_dim: int) -> torch.Tensor:
    """The permutation from our rotary layout of a head's query/key rows (channel ``i``
    pairs with ``i + head_dim/2``) to RoFormer's (``2i`` pairs with ``2i+1``): the same dot
    products."""
    half = torch.arange(head_dim // 2)
    return torch.stack((half, half + head_dim // 2), dim=1).flatten()


def _reorder(w: torch.Tensor, n_head: int, inverse: bool) -> torch.Tensor:
    head_dim = w.shape[0] // n_head
    order = _rotary_order(head_dim)
    if inverse:
        order = torch.argsort(order)
    return w.reshape(n_head, head_dim, *w.shape[1:])[:, order].reshape(w.shape)


# One table, both ways: each of our parameters and the Hugging Face tensors it is the
# concatenation of along its first dimension; ``True`` marks RoFormer's interleaved rows.
Parts = list[tuple[str, list[tuple[str, bool]]]]


def _parts(cfg: BertConfig, prefix: str) -> Parts:
    post, rope = cfg.norm == "post", cfg.pos == "rope"
    emb = prefix + "embeddings."
    parts: Parts = [
        ("embeddings.tok.weight", [(emb + "word_embeddings.weight", False)]),
        ("embeddings.seg.weight", [(emb + "token_type_embeddings.weight", False)]),
    ]
    if not rope:
        parts.append(("embeddings.pos.weight", [(emb + "position_embeddings.weight", False)]))
    # (HF name, ours) for the norms: post-LN after each residual add, pre-LN at each entry
    norms = (
        (("attention.output.LayerNorm", "norm1"), ("output.LayerNorm", "norm2"))
        if post
        else (("attention.ln", "norm1"), ("ln", "norm2"))
    )
    top = (emb + "LayerNorm", "embeddings.norm") if post else (prefix + "encoder.ln", "norm_f")
    for i in range(cfg.n_layer):
        src, dst = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = [(dst + f"attention.self.{n}.{kind}", rope and n != "value")
                   for n in ("query", "key", "value")]  # fmt: skip
            parts += [
                (src + f"attn.qkv.{kind}", qkv),
                (src + f"attn.proj.{kind}", [(dst + f"attention.output.dense.{kind}", False)]),
                (src + f"mlp.fc.{kind}", [(dst + f"intermediate.dense.{kind}", False)]),
                (src + f"mlp.proj.{kind}", [(dst + f"output.dense.{kind}", False)]),
            ]
            parts += [(f"{src}{ours}.{kind}", [(f"{dst}{theirs}.{kind}", False)])
                      for theirs, ours in norms]  # fmt: skip
    for kind in ("weight", "bias"):
        parts += [
            (f"{top[1]}.{kind}", [(f"{top[0]}.{kind}", False)]),
            (f"head.dense.{kind}", [(f"cls.predictions.transform.dense.{kind}", False)]),
            (f"head.norm.{kind}", [(f"cls.predictions.transform.LayerNorm.{kind}", False)]),
        ]
    parts.append(("head.decoder.bias", [("cls.predictions.bias", False)]))
    return parts


def hf_state_dict(model: Bert) -> dict[str, torch.Tensor]:
    """Our weights under Hugging Face's names (``bert.*`` or ``roformer.*`` encoder,
    ``cls.predictions.*`` head)."""
    cfg = model.config
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for ours, theirs in _parts(cfg, "roformer." if cfg.pos == "rope" else "bert."):
        for (name, rotary), t in zip(theirs, sd[ours].chunk(len(theirs)), strict=True):
            out[name] = (_reorder(t, cfg.n_head, inverse=False) if rotary else t).contiguous()
    out["cls.predictions.decoder.weight"] = sd["embeddings.tok.weight"]
    out["cls.predictions.decoder.bias"] = sd["head.decoder.bias"]
    return out


def to_hf(model: Bert):
    """The equivalent ``transformers`` masked LM (float32, eval mode), weights copied."""
    import transformers as tf

    cfg = model.config
    arch = hf_architecture(cfg)
    hf = getattr(tf, CLASSES[arch])(_hf_config(cfg, arch))
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    # RoFormer's sinusoidal table is computed, not trained: nothing of ours maps onto it
    missing = [k for k in missing if not k.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"HF BERT weight mapping incomplete: missing={missing} unexpected={unexpected}"
        )
    hf.tie_weights()
    return hf.float().eval()


def config_from_hf(hf: Any, pad_id: int | None = None, where: str = "checkpoint") -> BertConfig:
    """Our config of a transformers BERT / Megatron-BERT / RoFormer config; refuses, in one
    line, an option we would only approximate."""
    arch = getattr(hf, "model_type", None)
    if arch not in CLASSES:
        names = ", ".join(getattr(hf, "architectures", None) or [str(arch)])
        raise LlmworksError(
            f"{where}: {names} is not a masked LM we import; supported: {SUPPORTED}"
        )
    problems = [
        f"hidden_act={hf.hidden_act!r} (supported: gelu)" if hf.hidden_act != "gelu" else "",
        "is_decoder=true" if getattr(hf, "is_decoder", False) else "",
    ]
    if arch == "roformer":
        if getattr(hf, "embedding_size", hf.hidden_size) != hf.hidden_size:
            problems.append("embedding_size != hidden_size (supported: equal)")
        if getattr(hf, "rotary_value", False):
            problems.append("rotary_value=true (supported: false)")
    elif getattr(hf, "position_embedding_type", "absolute") != "absolute":
        problems.append(
            f"position_embedding_type={hf.position_embedding_type!r} (supported: absolute)"
        )
    problems = [p for p in problems if p]
    if problems:
        raise LlmworksError(f"{where}: {CLASSES[arch]} with {problems[0]} is not supported")
    return BertConfig(
        vocab_size=hf.vocab_size,
        max_seq_len=hf.max_position_embeddings,
        n_layer=hf.num_hidden_layers,
        n_head=hf.num_attention_heads,
        d_model=hf.hidden_size,
        d_hidden=hf.intermediate_size,
        type_vocab_size=hf.type_vocab_size,
        norm="pre" if arch == "megatron-bert" else "post",
        norm_eps=hf.layer_norm_eps,
        pos="rope" if arch == "roformer" else "learned",
        rope_base=10000.0,
        dropout=0.0,
        pad_id=hf.pad_token_id if pad_id is None else pad_id,
    )


def from_hf(
    source: str | Path, dtype: torch.dtype = torch.float32, where: str = "checkpoint"
) -> tuple[Bert, Path]:
    """Our ``Bert`` with the weights of a Hugging Face BERT / Megatron-BERT / RoFormer
    checkpoint (a hub id or a directory: ``*ForMaskedLM``, ``*ForPreTraining`` or the bare
    encoder), and the directory its files are in. A checkpoint without an MLM head (a bare
    encoder) is refused: the head is what the MLM trains and scores."""
    path = resolve(source, where)
    cfg = config_from_hf(read_config(path), where=f"{where} {source}")
    weights = Weights(path)
    names = weights.names()
    prefix = next(
        (p for p in ("bert.", "roformer.", "")
         if f"{p}embeddings.word_embeddings.weight" in names), None,
    )  # fmt: skip
    if prefix is None:
        raise LlmworksError(f"{where} {source}: no embeddings.word_embeddings.weight; not a BERT")
    parts = _parts(cfg, prefix)
    pooler = [f"{prefix}pooler.dense.{k}" for k in ("weight", "bias")]
    used = {n for _, theirs in parts for n, _ in theirs} | set(pooler)
    used |= {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}  # tied
    extra = sorted(n for n in names - used if not n.endswith(IGNORED))
    missing = sorted({n for _, theirs in parts for n, _ in theirs} - names)
    if missing or extra:
        what = (
            f"lacks {missing[0]}" if missing else f"has tensors we have no place for: {extra[:3]}"
        )
        raise LlmworksError(f"{where} {source}: the checkpoint {what}")
    fills = list(_fills(parts, weights, cfg))
    for ours, theirs in zip(("pooler.weight", "pooler.bias"), pooler, strict=True):
        fills.append((ours, _pooler_fill(weights, theirs)))
    model = load_state(lambda: Bert(cfg), iter(fills), dtype)
    return model, path


def _fills(
    parts: Parts, weights: Weights, cfg: BertConfig
) -> Iterator[tuple[str, Callable[[torch.Tensor], None]]]:
    for ours, theirs in parts:

        def fill(param: torch.Tensor, theirs: list[tuple[str, bool]] = theirs) -> None:
            rows = param.shape[0] // len(theirs)
            for k, (name, rotary) in enumerate(theirs):
                dest = param[k * rows : (k + 1) * rows]
                if rotary:
                    dest.copy_(_reorder(weights.get(name), cfg.n_head, inverse=True))
                else:
                    weights.copy_into(name, dest)

        yield ours, fill


def _pooler_fill(weights: Weights, name: str) -> Callable[[torch.Tensor], None]:
    """The checkpoint's ``[CLS]`` pooler where it has one; else BERT's initialisation (only
    a downstream task trains it)."""

    def fill(param: torch.Tensor) -> None:
        if name in weights:
            weights.copy_into(name, param)
        elif param.dim() == 2:
            torch.nn.init.normal_(param, 0.0, 0.02)
        else:
            torch.nn.init.zeros_(param)

    return fill


def hf_tokenizer(tokenizer_json: str | Path, max_len: int):
    """The trained WordPiece ``tokenizer.json`` as a ``PreTrainedTokenizerFast`` with BERT's
    special tokens (its post-processor already frames ``[CLS] ... [SEP]``)."""
    from transformers import PreTrainedTokenizerFast

    vocab = read_tokenizer(tokenizer_json).get_vocab()
    missing = [t for t in SPECIAL.values() if t not in vocab]
    if missing:
        raise LlmworksError(
            f"{tokenizer_json} has no {missing}; BERT needs the wordpiece tokenizer"
        )
    # segment ids too (BERT's inputs): a text pair's second text is segment 1
    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        model_max_length=max_len,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        **SPECIAL,
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
    """The stage's export into ``out_dir``: ``BertForMaskedLM``, ``MegatronBertForMaskedLM``
    (pre-LN) or ``RoFormerForMaskedLM`` (rotary positions), and its tokenizer. An
    architecture without a counterpart is skipped with a warning (``require_exportable``)."""
    model = built.module.model
    require_exportable(hf_architecture, model.config)
    export_hf(model, built.files[TOKENIZER_FILE], out_dir)
