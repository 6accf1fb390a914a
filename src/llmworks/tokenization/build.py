"""The three tokenizer families of the course, built with Hugging Face ``tokenizers``.

- ``bpe``: byte-level BPE as in GPT-2 (split as GPT-2 or GPT-4 split text): every string
  round-trips, no unknown token ever.
- ``wordpiece``: BERT's WordPiece with ``##`` continuations and ``[CLS] … [SEP]`` framing.
- ``unigram``: a unigram LM over ``▁``-marked pieces, as SentencePiece trains it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers as tk_trainers

from llmworks.errors import LlmworksError
from llmworks.tokenization.pinned import PinnedSymbols

TYPES = ("bpe", "wordpiece", "unigram")

# How byte-level BPE splits text before merging (merges never cross these pieces).
# gpt2: GPT-2's pattern, which cuts every newline into its own piece, so a paragraph break is
# two "\n" tokens and a model can learn to follow "\n" by "\n" forever. gpt4: the pattern of
# cl100k (GPT-4, Llama 3): runs of newlines stay one piece ("\n\n" becomes one token) and
# numbers split into groups of at most three digits.
SPLIT_PATTERNS = {
    "gpt2": None,  # ByteLevel's built-in regex
    "gpt4": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}


@dataclass(frozen=True)
class TokenizerSpec:
    """What a tokenizer config says (``conf/tokenizer/*.yaml``); the trainer reads nothing else."""

    type: str
    vocab_size: int
    min_frequency: int
    lowercase: bool
    special_tokens: list[str]
    unk_token: str
    eot_token: str
    # WordPiece/unigram: most distinct characters kept as initial symbols.
    limit_alphabet: int
    bert_framing: bool  # encode as [CLS] ... [SEP] (the WordPiece tokenizer BERT reads)
    split_pattern: str | None  # bpe: a key of SPLIT_PATTERNS; the others split their own way
    # wordpiece: remove accents (true), keep them (false), or decide by the corpus's script
    # (auto, resolved by the trainer: llmworks.tokenization.train.resolve_strip_accents)
    strip_accents: bool | str | None
    # at most this much train-split text (UTF-8 bytes, a seeded sample of whole documents);
    # null: the whole split (llmworks.tokenization.sample)
    train_bytes: int | None

    def __post_init__(self) -> None:
        if self.train_bytes is not None and self.train_bytes < 1:
            raise ValueError(
                f"train_bytes={self.train_bytes} must be at least 1 (or null: the whole split)"
            )
        if self.type not in TYPES:
            raise ValueError(f"tokenizer type must be one of {TYPES}, not {self.type!r}")
        if self.type == "bpe" and self.split_pattern not in SPLIT_PATTERNS:
            raise ValueError(
                f"split_pattern={self.split_pattern!r}: byte-level BPE takes one of "
                f"{sorted(SPLIT_PATTERNS)}"
            )
        if self.type != "bpe" and self.split_pattern is not None:
            raise ValueError(
                f"split_pattern={self.split_pattern!r} applies to type bpe only; "
                f"{self.type} splits text its own way (set it to null)"
            )
        if self.type == "wordpiece" and self.strip_accents not in (True, False, "auto"):
            raise ValueError(
                f"strip_accents={self.strip_accents!r}: WordPiece takes true, false or auto"
            )
        if self.type != "wordpiece" and self.strip_accents is not None:
            raise ValueError(
                f"strip_accents={self.strip_accents!r} applies to type wordpiece only; "
                f"set it to null for {self.type}"
            )
        for token in (self.unk_token, self.eot_token):
            if token not in self.special_tokens:
                raise ValueError(f"{token!r} must be listed in the tokenizer's special_tokens")
        if self.type == "bpe" and self.vocab_size < self.min_vocab_size:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the byte-level alphabet plus "
                f"special tokens ({self.min_vocab_size}); raise vocab_size"
            )

    @property
    def min_vocab_size(self) -> int:
        return (256 if self.type == "bpe" else 1) + len(self.special_tokens)


def build_tokenizer(
    spec: TokenizerSpec, pinned: PinnedSymbols | None = None
) -> tuple[Tokenizer, tk_trainers.Trainer]:
    """An untrained tokenizer and its trainer, ready for ``train_from_iterator``; ``pinned``:
    the WordPiece trainer's starting symbols, fixed in advance (llmworks/tokenization/pinned.py).
    For unigram the stage trains with SentencePiece instead (unigram.py: deterministic); the
    Rust UnigramTrainer returned here is the peer the benchmark times it against."""
    if spec.type == "wordpiece":
        return _wordpiece(spec, pinned)
    return {"bpe": _byte_level_bpe, "unigram": _unigram}[spec.type](spec)


def _byte_level_bpe(spec: TokenizerSpec) -> tuple[Tokenizer, tk_trainers.Trainer]:
    tok = Tokenizer(models.BPE())
    # No normalizer: byte-level BPE must give back exactly the bytes it was given.
    if spec.lowercase:
        tok.normalizer = normalizers.Lowercase()
    pattern = SPLIT_PATTERNS[spec.split_pattern]
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:  # as Llama 3's tokenizer.json does: split by the pattern, then map bytes to symbols
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = tk_trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(spec.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    return tok, trainer


def _wordpiece(
    spec: TokenizerSpec, pinned: PinnedSymbols | None
) -> tuple[Tokenizer, tk_trainers.Trainer]:
    tok = Tokenizer(models.WordPiece(unk_token=spec.unk_token))
    if spec.strip_accents not in (True, False):
        raise LlmworksError("strip_accents=auto must be resolved against the corpus first")
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=spec.strip_accents,
        lowercase=spec.lowercase,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = tk_trainers.WordPieceTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=list(spec.special_tokens) + (pinned.continuations if pinned else []),
        # pinned: the alphabet given whole (its characters outrank all others, and the limit
        # then removes exactly the others)
        limit_alphabet=len(pinned.alphabet) if pinned else spec.limit_alphabet,
        initial_alphabet=pinned.alphabet if pinned else [],
        continuing_subword_prefix="##",
        show_progress=True,
    )
    return tok, trainer


def _unigram(spec: TokenizerSpec) -> tuple[Tokenizer, tk_trainers.Trainer]:
    tok = Tokenizer(models.Unigram())
    # Tabs become spaces (as SentencePiece's nmt_nfkc does) and runs of them one space.
    steps = [normalizers.NFKC(), normalizers.Replace(Regex("[ \t]+"), " ")]
    if spec.lowercase:
        steps.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = tk_trainers.UnigramTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(spec.special_tokens),
        unk_token=spec.unk_token,
        show_progress=True,
    )
    return tok, trainer


def add_bert_framing(tok: Tokenizer, cls: str = "[CLS]", sep: str = "[SEP]") -> None:
    """``[CLS] A [SEP]`` (and ``[CLS] A [SEP] B [SEP]`` for pairs), as BERT expects."""
    cls_id, sep_id = tok.token_to_id(cls), tok.token_to_id(sep)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, cls_id), (sep, sep_id)],
    )
