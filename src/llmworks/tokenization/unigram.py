"""Unigram trained twice gives the same tokenizer, byte for byte.

The ``tokenizers`` UnigramTrainer runs its EM over a hash map of words whose order changes
from process to process, so the piece scores (and at the margin the pieces) of two trainings
differed, and no option fixes the order. SentencePiece's own trainer, on one thread and fed
the words in a fixed order, is deterministic (with two threads it gives another, equally
fixed, model). It trains on the words exactly as our tokenizer will see them (after its
normalizer and ``▁``-marking pre-tokenizer), counted here and handed over as ``word<TAB>count``
lines; its pieces and scores then become the ``tokenizers`` Unigram model, so encoding,
saving and the rest of the pipeline are unchanged.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter

import sentencepiece as spm
from tokenizers import Tokenizer, models

from llmworks.errors import LlmworksError

log = logging.getLogger(__name__)

SPM_UNK = "<unk>"  # SentencePiece's own unknown piece, replaced by the spec's unk_token


def train_unigram(
    tok: Tokenizer,
    counts: Counter[str],
    vocab_size: int,
    special_tokens: list[str],
    unk_token: str,
) -> Tokenizer:
    """Give ``tok`` (normalizer and pre-tokenizer already set) a Unigram model of at most
    ``vocab_size`` entries, special tokens first, learned from ``counts`` (words as ``tok``
    pre-tokenizes them)."""
    pieces = vocab_size - len(special_tokens)
    if pieces < 1:
        raise LlmworksError(
            f"vocab_size={vocab_size} leaves no room beside the {len(special_tokens)} special "
            "tokens; raise vocab_size"
        )
    try:
        proto = sentencepiece_model(counts, pieces)
    except RuntimeError as exc:
        sizes = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(exc))
        if sizes is None:
            raise
        chars = int(sizes.group(1)) - 1  # SentencePiece counts its <unk> with them
        raise LlmworksError(
            f"vocab_size={vocab_size} is too small for the unigram tokenizer: the corpus has "
            f"{chars} distinct characters, each needs a piece, and {len(special_tokens)} "
            f"special tokens come first; raise vocab_size to at least {chars + len(special_tokens)}"
        ) from exc
    tok.model = unigram_model(proto, special_tokens, unk_token)
    tok.add_special_tokens(list(special_tokens))
    return tok


def sentencepiece_model(counts: Counter[str], pieces: int) -> bytes:
    """A serialized SentencePiece unigram model of at most ``pieces`` pieces (besides its
    ``<unk>``) trained on ``counts``, on one thread, with nothing normalized or added: the
    words arrive as our tokenizer splits them."""
    if not counts:
        raise LlmworksError("the unigram tokenizer got no words to train on")
    # Most frequent first, ties by the word itself: SentencePiece's result depends on order.
    lines = (f"{word}\t{n}" for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    model = io.BytesIO()
    log.info("unigram: SentencePiece on %d distinct words (one thread)", len(counts))
    spm.SentencePieceTrainer.train(
        sentence_iterator=lines,
        model_writer=model,
        input_format="tsv",
        model_type="unigram",
        vocab_size=pieces + 1,  # + its own <unk>, dropped by unigram_model
        hard_vocab_limit=False,  # a small corpus may hold fewer pieces worth keeping
        character_coverage=1.0,  # every character of the corpus stays a piece
        normalization_rule_name="identity",  # the tokenizer's normalizer already ran
        add_dummy_prefix=False,  # the pre-tokenizer already marked words with ▁
        remove_extra_whitespaces=False,
        max_sentence_length=1 << 16,
        unk_id=0,
        unk_piece=SPM_UNK,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=1,  # more threads split the EM sums differently
        minloglevel=2,
    )
    return model.getvalue()


def unigram_model(proto: bytes, special_tokens: list[str], unk_token: str) -> models.Unigram:
    """The ``tokenizers`` Unigram model of a SentencePiece model: the special tokens first
    (score 0, as the Rust trainer puts them), then every piece with its log-probability."""
    trained = spm.SentencePieceProcessor(model_proto=proto)
    vocab = [(token, 0.0) for token in special_tokens] + [
        (trained.id_to_piece(i), trained.get_score(i))
        for i in range(trained.get_piece_size())
        if trained.id_to_piece(i) != SPM_UNK
    ]
    return models.Unigram(vocab, unk_id=special_tokens.index(unk_token), byte_fallback=False)
