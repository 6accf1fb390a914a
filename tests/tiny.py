"""Tiny things many tests build: a byte-level BPE tokenizer and token shards in the encode
stage's format (without running the stages), and random GPT and BERT models whose norms and
biases are perturbed too, so a wrong weight mapping cannot hide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llmworks.data.shards import dtype_for_vocab, tokenizer_hash
from llmworks.families.bert.model import Bert
from llmworks.families.gpt.model import GPT
from llmworks.io import write_json

from conftest import bert_config, gpt_config

VOCAB = 300  # random_gpt's and random_bert's vocabulary
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
TEXT = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Language models learn the statistics of text from very large corpora.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "The cat sat on the mat while the dog slept by the warm fire.",
    "Rivers flow to the sea, carrying water from mountains to the coast.",
    "Music and mathematics share patterns of rhythm, symmetry and proportion.",
]


def train_bpe(path: Path, vocab_size: int = 300) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT * 20, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def write_shards(
    data_root: Path, name: str = "bpe", docs_per_split: dict | None = None, vocab_size: int = 300
) -> Path:
    """``<data_root>/tokenizers/<name>/tokenizer.json`` and ``<data_root>/tokens/<name>/``."""
    from tokenizers import Tokenizer

    tok_json = train_bpe(data_root / "tokenizers" / name / "tokenizer.json", vocab_size)
    tok = Tokenizer.from_file(str(tok_json))
    sep = tok.token_to_id("<|endoftext|>")
    out = data_root / "tokens" / name
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for_vocab(tok.get_vocab_size())
    splits = {}
    rng = np.random.default_rng(0)
    for split, n_docs in (docs_per_split or {"train": 200, "validation": 30, "test": 30}).items():
        docs = [" ".join(rng.permutation(TEXT)[:3]) for _ in range(n_docs)]
        ids, offsets, n_bytes = [], [0], 0
        for d in docs:
            ids += tok.encode(d).ids + [sep]
            offsets.append(len(ids))
            n_bytes += len(d.encode("utf-8"))
        np.asarray(ids, dtype=dtype).tofile(out / f"{split}.bin")
        np.save(out / f"{split}.offsets.npy", np.asarray(offsets, dtype=np.int64))
        splits[split] = {"tokens": len(ids), "docs": n_docs, "bytes": n_bytes}
    write_json(
        out / "meta.json",
        {
            "tokenizer_sha256": tokenizer_hash(tok_json),
            "vocab_size": tok.get_vocab_size(),
            "dtype": dtype.name,
            "separator": "<|endoftext|>",
            "separator_id": sep,
            "splits": splits,
        },
    )
    return out


# GPT variants every decoding and model test covers: classic, GQA, MQA + window, MoE
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
    """A 2-layer GPT over 97 tokens with a 32-token context (overrides ``kw``), untouched init."""
    torch.manual_seed(0)
    cfg = gpt_config(97, block_size=32, n_layer=2, n_head=4, d_model=32, **kw)
    return GPT(cfg).eval()


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random norms and biases too, so a wrong mapping or a skipped bias cannot hide."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def random_gpt(vocab: int = VOCAB, **kw) -> GPT:
    """A 2-layer, 32-wide GPT of ``conf/gpt/default.yaml``'s switches with overrides ``kw``."""
    torch.manual_seed(0)
    return perturbed(GPT(gpt_config(vocab, block_size=64, n_layer=2, n_head=4, d_model=32, **kw)))


def random_bert(vocab: int = VOCAB, **kw) -> Bert:
    """A 2-layer, 32-wide BERT of ``conf/bert/default.yaml``'s switches with overrides ``kw``."""
    torch.manual_seed(0)
    cfg = bert_config(vocab, max_seq_len=64, n_layer=2, n_head=4, d_model=32, **kw)
    return perturbed(Bert(cfg))


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three sequences of 24 ids for a BERT of ``VOCAB`` tokens: ``(ids, padding mask,
    segments)``, the second and third right-padded with 0 (rows of 24, 17 and 5 tokens)."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(5, VOCAB, (3, 24), generator=g)
    mask = torch.ones(3, 24, dtype=torch.bool)
    mask[1, 17:] = False
    mask[2, 5:] = False
    idx[~mask] = 0
    token_type = (torch.arange(24) >= 12).long().expand(3, 24)
    return idx, mask, token_type


# ----------------------------------------------------------------------------- HF checkpoints
# Tiny random checkpoints of every architecture we import, made with transformers' own
# classes and save_pretrained (nothing downloaded): 2 layers, 64 wide, 4 heads.

HF_CAUSAL = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2)),
    "llama3_rope_scaled_tied": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            num_key_value_heads=2,
            tie_word_embeddings=True,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
    ),
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        dict(num_key_value_heads=2, sliding_window=7),
    ),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=32)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(num_key_value_heads=2, sliding_window=9)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {}),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2),
    ),
}
HF_MASKED = {
    "bert": ("BertConfig", "BertForMaskedLM", {}),
    "roformer": ("RoFormerConfig", "RoFormerForMaskedLM", dict(embedding_size=64)),
    "megatron-bert": ("MegatronBertConfig", "MegatronBertForMaskedLM", {}),
}


def hf_checkpoint(kind: str, out: Path, vocab: int = VOCAB, tokenizer: Path | None = None, **kw):
    """A tiny random ``kind`` (a key of ``HF_CAUSAL`` or ``HF_MASKED``) saved in ``out``, with
    ``tokenizer`` (a ``tokenizer.json``) beside it; its norms and biases perturbed. Returns
    the transformers model (eval mode)."""
    import transformers as tf

    config_cls, model_cls, extra = (HF_CAUSAL | HF_MASKED)[kind]
    if config_cls == "GPT2Config":
        shape = dict(n_embd=64, n_layer=2, n_head=4, n_positions=64)
    else:
        shape = dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=64,
        )  # fmt: skip
    # ids of SPECIALS: [PAD] 0, <|endoftext|> 5 (begins and ends a document, as in GPT-2)
    special = dict(bos_token_id=5, eos_token_id=5, pad_token_id=0)
    config = getattr(tf, config_cls)(vocab_size=vocab, **shape, **(special | extra | kw))
    torch.manual_seed(0)
    model = perturbed(getattr(tf, model_cls)(config))
    model.save_pretrained(out)
    if tokenizer is not None:
        from transformers import PreTrainedTokenizerFast

        names = dict(eos_token="<|endoftext|>", pad_token="[PAD]", unk_token="[UNK]")
        if kind in HF_MASKED:
            names = dict(
                pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                mask_token="[MASK]",
            )  # fmt: skip
        PreTrainedTokenizerFast(tokenizer_file=str(tokenizer), **names).save_pretrained(out)
    return model
