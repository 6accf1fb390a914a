"""WordPiece trained twice gives the same tokenizer, byte for byte.

The Rust trainer (huggingface/tokenizers#1794) numbers each ``##c`` continuation symbol when
it first meets it while walking a hash map of words, whose order changes from process to
process; merges of equal count are then ranked by those numbers, so the vocabulary changed at
its margin from one ``dvc repro`` to the next (and with it BERT's figures). It also breaks
ties in ``limit_alphabet`` by hash order. Here the alphabet and the continuation symbols are
worked out first, in a fixed order (most frequent first, then by code point), and handed to
the trainer: the alphabet as ``initial_alphabet``, the continuations as extra special tokens,
which it numbers before anything else and then treats as ordinary symbols. Afterwards they
stop being special (``unpin``), so they encode like any other vocabulary entry.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer

PREFIX = "##"


@dataclass(frozen=True)
class PinnedSymbols:
    """The symbols the WordPiece trainer starts from, in the order it numbers them."""

    alphabet: list[str]
    continuations: list[str]


def word_counts(tok: Tokenizer, batches: Iterable[list[str]]) -> Counter[str]:
    """Words as the trainer sees them: after the tokenizer's normalizer and pre-tokenizer."""
    counts: Counter[str] = Counter()
    for batch in batches:
        for text in batch:
            normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
            counts.update(word for word, _ in tok.pre_tokenizer.pre_tokenize_str(normalized))
    return counts


def pinned_symbols(counts: Counter[str], limit_alphabet: int | None) -> PinnedSymbols:
    """The alphabet the trainer would keep (the ``limit_alphabet`` most frequent characters,
    ties by code point) and the ``##c`` of each kept character that ever follows another in
    a word; both sorted by code point."""
    chars: Counter[str] = Counter()
    inner: set[str] = set()
    for word, n in counts.items():
        for ch in word:
            chars[ch] += n
        inner.update(word[1:])
    ranked = sorted(chars, key=lambda ch: (-chars[ch], ch))
    kept = sorted(ranked[:limit_alphabet] if limit_alphabet else ranked)
    return PinnedSymbols(kept, [PREFIX + ch for ch in kept if ch in inner])


def unpin(tok: Tokenizer, pinned: PinnedSymbols) -> Tokenizer:
    """The trained tokenizer with the continuation symbols back to plain vocabulary entries
    (the trainer registered them as special tokens, which would match ``##c`` in raw text)."""
    drop = set(pinned.continuations)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in drop]
    return Tokenizer.from_str(json.dumps(data))
