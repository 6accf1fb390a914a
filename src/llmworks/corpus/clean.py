"""Normalization, de-duplication and the train/validation/test split of documents.

The split is decided by a hash of each normalized document, not by its position, so a
document stays in its split when the corpus grows or is reordered.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_INLINE_SPACE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")

SPLITS = ("train", "validation", "test")


def normalize_text(text: str) -> str:
    """NFC, one space between words, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = (_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def assign_split(digest: str, validation: float, test: float) -> str:
    """Map a document hash to a split; the hash is uniform, so fractions hold on average."""
    u = int(digest[:12], 16) / float(16**12)
    if u < validation:
        return "validation"
    if u < validation + test:
        return "test"
    return "train"
