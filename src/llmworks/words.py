"""Words, the unit of the word-level models and of every per-word figure: a regex word
tokenizer that Word2Vec trains on and the bag-of-words baselines count, so both see the same
words, and the word count behind words per token and word-level perplexity."""

from __future__ import annotations

import re

# Scripts written without spaces between words (Chinese and Japanese: CJK ideographs,
# hiragana, katakana). Each character counts as one word there, the usual unit of Chinese
# word-level figures; whitespace would make a whole clause one "word".
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"

# Runs of letters (apostrophes inside words kept), like gensim's simple_preprocess but
# without its length limits: words the benchmarks ask about ("a", "tv") stay in; a character
# of an unspaced script is a word of its own.
_LETTERS = rf"[^\W\d_{_UNSPACED}]"
_WORD = re.compile(rf"[{_UNSPACED}]|{_LETTERS}+(?:'{_LETTERS}+)*")

# What word counts (words per token, word-level perplexity) count: whitespace-separated
# pieces, and each character of an unspaced script.
_COUNTED = re.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}]+")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    return _WORD.findall(text.lower() if lowercase else text)


_HAS_UNSPACED = re.compile(rf"[{_UNSPACED}]")


def count_words(text: str) -> int:
    """Words in ``text`` as the figures per word count them: ``len(text.split())`` for
    spaced scripts, one per character of Chinese or Japanese. (Text without such characters
    takes ``str.split``, the same count at several times the speed: encode counts every
    word of the corpus.)"""
    if _HAS_UNSPACED.search(text) is None:
        return len(text.split())
    return len(_COUNTED.findall(text))


def token_as_word(token: str) -> str:
    """A subword token as a "word" of a word-level model: word2vec files split on
    whitespace, so a token's spaces are written as SentencePiece's ``▁``."""
    return token.replace(" ", "\u2581")
