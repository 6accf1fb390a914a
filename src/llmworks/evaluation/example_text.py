"""The sentence the report cuts into tokens and draws attention on. The configured ones are
English; on a corpus in another script they would show nothing but [UNK]s, so there a
sentence of the corpus's own test split stands in, and the report says so."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmworks.words import count_words

if TYPE_CHECKING:
    from llmworks.evaluation.recorder import Recorder

# a sentence ends at . ! ? or their CJK forms
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s*")


def foreign_share(text: str, corpus: Sequence[str]) -> float:
    """The share of ``text``'s letters that never occur in ``corpus``."""
    seen = set().union(*map(set, corpus)) if corpus else set()
    letters = [ch for ch in text if ch.isalpha()]
    return sum(ch not in seen for ch in letters) / max(1, len(letters))


def corpus_sentence(corpus: Sequence[str], min_words: int = 6, max_words: int = 30) -> str:
    """The first sentence of ``corpus`` of ``min_words`` to ``max_words`` words, else the
    first ``max_words`` words of its first text."""
    for text in corpus:
        for sentence in _SENTENCE_END.split(text):
            if min_words <= count_words(sentence) <= max_words:
                return sentence.strip()
    first = next((t for t in corpus if t.strip()), "")
    return " ".join(first.split()[:max_words])


def example_text(configured: str, corpus: Sequence[str]) -> tuple[str, str | None]:
    """``configured``, or, when most of its letters never occur in ``corpus`` (another
    script), a sentence of ``corpus`` and the reason for the swap."""
    share = foreign_share(configured, corpus)
    if share <= 0.5 or not any(t.strip() for t in corpus):
        return configured, None
    return corpus_sentence(corpus), (
        f"{share:.0%} of the letters of the configured sentence never occur in this corpus, "
        "so a sentence of its test split is shown instead"
    )


def test_sample(rec: Recorder, n: int = 200) -> list[str]:
    """The first ``n`` documents of the test split: the corpus an example is judged by."""
    return list(rec.corpus["test"][:n]["text"])
