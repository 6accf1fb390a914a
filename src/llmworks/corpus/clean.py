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
# terminal escape sequences (colours, cursor moves: ESC [ ... final byte; ESC ] ... BEL/ST),
# then any other control character but the whitespace ones, which _INLINE_SPACE handles
_ANSI_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")

SPLITS = ("train", "validation", "test")


def normalize_text(text: str) -> str:
    """NFC, no terminal escapes or control characters (a coloured log's ``\x1b[33m`` would
    otherwise become the "word" ``m``), one space between words, at most one blank line
    between paragraphs."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", _ANSI_ESCAPE.sub("", text))
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
