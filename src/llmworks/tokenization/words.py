"""Words, the unit of the word-level models: a regex word tokenizer that Word2Vec trains on
and the bag-of-words baselines count, so both see the same words."""

from __future__ import annotations

import re

# Runs of letters (apostrophes inside words kept), like gensim's simple_preprocess but
# without its length limits: words the benchmarks ask about ("a", "tv") stay in.
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return _WORD.findall(text.lower() if lowercase else text)


def token_as_word(token: str) -> str:
    """A subword token as a "word" of a word-level model: word2vec files split on
    whitespace, so a token's spaces are written as SentencePiece's ``▁``."""
    return token.replace(" ", "\u2581")
