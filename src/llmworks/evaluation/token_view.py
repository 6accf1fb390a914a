"""See how a tokenizer cuts text: each token coloured, in the terminal (ANSI) or in HTML.

llmworks-tokens "Tokenizers split unbelievably long words." --data data
"""

from __future__ import annotations

import argparse
import html
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from llmworks.tokenization.files import read_tokenizer

# Background colours that keep black text readable; neighbours always differ.
PALETTE = ["#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad"]
ANSI_BACKGROUNDS = [223, 194, 159, 183, 225, 229, 153, 217]


@dataclass(frozen=True)
class Piece:
    """A stretch of the original text and the token that covers it."""

    text: str
    token: str
    id: int


def pieces(tok: Tokenizer, text: str) -> list[Piece]:
    """Cut ``text`` into consecutive pieces, one per token, that concatenate back to ``text``.

    Offsets come from the tokenizer, so normalization (lower-casing, NFKC) does not matter.
    Byte-level tokens that split one character share it: the character goes to the first.
    """
    enc = tok.encode(text, add_special_tokens=False)
    out: list[Piece] = []
    pos = 0
    for token, token_id, (start, end) in zip(enc.tokens, enc.ids, enc.offsets, strict=True):
        start = max(start, pos)
        if end <= start:
            continue
        if start > pos and out:  # text the tokenizer skipped (e.g. spaces) joins the previous piece
            prev = out[-1]
            out[-1] = Piece(prev.text + text[pos:start], prev.token, prev.id)
        elif start > pos:
            out.append(Piece(text[pos:start], "", -1))
        out.append(Piece(text[start:end], token, token_id))
        pos = end
    if pos < len(text):
        out.append(Piece(text[pos:], "", -1))
    return out


def to_ansi(parts: list[Piece]) -> str:
    colored = [
        f"\x1b[30;48;5;{ANSI_BACKGROUNDS[i % len(ANSI_BACKGROUNDS)]}m{p.text}\x1b[0m"
        for i, p in enumerate(parts)
    ]
    return "".join(colored)


def to_html(parts: list[Piece]) -> str:
    spans = [
        f'<span class="tok" style="background:{PALETTE[i % len(PALETTE)]}" '
        f'title="{html.escape(p.token)} ({p.id})">{html.escape(p.text)}</span>'
        for i, p in enumerate(parts)
    ]
    return f'<span class="tokens">{"".join(spans)}</span>'


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Show how each trained tokenizer cuts a text.")
    parser.add_argument("text", help="the text to tokenize")
    parser.add_argument("--data", default="data", help="the pipeline's data directory")
    parser.add_argument("--tokenizers", nargs="*", help="names (default: all trained)")
    parser.add_argument("--html", action="store_true", help="print HTML instead of ANSI")
    args = parser.parse_args(argv)
    root = Path(args.data) / "tokenizers"
    names = args.tokenizers or sorted(
        p.name for p in root.iterdir() if (p / "tokenizer.json").is_file()
    )
    if not names:
        raise SystemExit(f"no trained tokenizer under {root}; run `dvc repro` first")
    width = max(len(n) for n in names)
    for name in names:
        tok = read_tokenizer(root / name / "tokenizer.json")
        parts = pieces(tok, args.text)
        shown = to_html(parts) if args.html else to_ansi(parts)
        print(f"{name:>{width}} ({len(parts):3d} tokens)  {shown}")


if __name__ == "__main__":
    main()
