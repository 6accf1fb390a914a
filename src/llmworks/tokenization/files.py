"""Reading a ``tokenizer.json``: every stage loads its tokenizers through here, so a missing
or damaged file is one line naming it, not the library's own message ("expected ident at
line 2 column 0"), which names neither the file nor the fix."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from llmworks.errors import LlmworksError


def read_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved at ``path``, or a one-line ``LlmworksError`` that says which file
    is missing or damaged and how to get it back."""
    path = Path(path)
    fix = f"restore it (dvc checkout {path}) or rerun the stage that writes it (dvc repro)"
    if not path.is_file():
        raise LlmworksError(f"{path} does not exist; {fix}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise LlmworksError(f"{path} is not a valid tokenizer.json ({reason}); {fix}") from exc
