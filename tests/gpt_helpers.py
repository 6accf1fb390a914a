"""Tiny tokenizer + token shards in the encode stage's format, for GPT/training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmworks.data.shards import dtype_for_vocab, tokenizer_hash
from llmworks.io import write_json

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
