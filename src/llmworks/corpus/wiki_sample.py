"""The embedded default corpus: the English-Wikipedia excerpt that the gensim wheel ships.

It makes a real pipeline run possible on a fresh machine with no network. gensim's
``filter_wiki`` removes most markup; what it leaves (bold/italic quote marks, headings, list
markers, gallery and file lines, empty parentheses, reference sections) is cleaned here so
that the text reads as prose.
"""

from __future__ import annotations

import bz2
import json
import re
from collections.abc import Iterator
from pathlib import Path

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# Sections that hold citations and link lists rather than prose.
_DROP_SECTIONS = {
    "references",
    "external links",
    "see also",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "citations",
    "footnotes",
    "notes and references",
}
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*")
_MEDIA_LINE = re.compile(r"^\s*(?:file|image|category|thumb|gallery)\s*:", re.IGNORECASE)
_QUOTES = re.compile(r"'{2,}")
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]*\s*\)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")
_SPACE_AFTER_OPEN = re.compile(r"\(\s+")
_SPACES = re.compile(r"[ \t\u00a0]+")


def dump_path() -> Path:
    from gensim.test.utils import datapath

    return Path(datapath(WIKI_DUMP))


def clean_article(markup: str) -> str:
    """Wiki markup of one article -> paragraphs of plain prose separated by blank lines."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(markup)
    paragraphs: list[str] = []
    current: list[str] = []
    skip_level = 0  # >0 while inside a dropped section of that heading level

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in text.splitlines():
        line = raw.strip()
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, title = len(heading.group(1)), heading.group(2).strip().lower()
            if skip_level and level > skip_level:
                continue
            skip_level = level if title in _DROP_SECTIONS else 0
            continue
        if skip_level:
            continue
        if not line:
            flush()
            continue
        if _MEDIA_LINE.match(line) or line.startswith(("{|", "|", "!")):
            continue
        is_list_item = bool(_LIST_MARKER.match(line))
        line = _tidy(_LIST_MARKER.sub("", line))
        if is_list_item:
            flush()
            if len(line.split()) >= 4:
                paragraphs.append(line)
            continue
        if line:
            current.append(line)
    flush()
    return "\n\n".join(p for p in paragraphs if p)


def _tidy(line: str) -> str:
    line = _QUOTES.sub("", line)
    line = _EMPTY_PARENS.sub("", line)
    line = _SPACE_AFTER_OPEN.sub("(", line)
    line = _SPACE_BEFORE_PUNCT.sub(r"\1", line)
    return _SPACES.sub(" ", line).strip()


def iter_articles(path: Path | None = None) -> Iterator[dict[str, str]]:
    """Yield ``{"title", "text"}`` for every article (redirects dropped) in the dump."""
    from gensim.corpora.wikicorpus import extract_pages

    with bz2.open(path or dump_path()) as f:
        for title, markup, _pageid in extract_pages(f):
            if markup.lstrip()[:9].lower() == "#redirect":
                continue
            text = clean_article(markup)
            if text:
                yield {"title": title, "text": text}


def write_jsonl(out: Path, path: Path | None = None) -> Path:
    """Extract the articles to a JSON-lines file that ``datasets.load_dataset('json')`` reads."""
    with out.open("w", encoding="utf-8") as f:
        for article in iter_articles(path):
            f.write(json.dumps(article, ensure_ascii=False) + "\n")
    return out
