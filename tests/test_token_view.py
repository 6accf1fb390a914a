"""Token visualization: pieces cover the text exactly, for every tokenizer family."""

from __future__ import annotations

import html.parser

import pytest
from tokenizers import Tokenizer

from llmworks.evaluation.token_view import main, pieces, to_ansi, to_html
from llmworks.tokenization.build import add_bert_framing, build_tokenizer

from conftest import tokenizer_spec

TEXTS = [
    "Tokenizers  split unbelievably long words: 漢字 🙂 café.",
    "The capital of France is Paris.",
    "",
]
CORPUS = ["The capital of France is Paris, a city of words and tokens."] * 50


def _train(kind: str) -> Tokenizer:
    spec = tokenizer_spec(kind, vocab_size=320, min_frequency=1)
    tok, trainer = build_tokenizer(spec)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if kind == "wordpiece":
        add_bert_framing(tok)
    return tok


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_pieces_concatenate_back_to_the_text(kind: str) -> None:
    tok = _train(kind)
    for text in TEXTS:
        parts = pieces(tok, text)
        assert "".join(p.text for p in parts) == text
        assert all(p.text for p in parts)
    assert len(pieces(tok, "The capital of France")) >= 4


def test_ansi_and_html_render_every_piece() -> None:
    parts = pieces(_train("bpe"), "a <b> & c")
    ansi = to_ansi(parts)
    assert ansi.count("\x1b[0m") == len(parts)
    page = to_html(parts)
    assert "<b>" not in page and "&lt;" in page and page.count('class="tok"') == len(parts)

    class Collect(html.parser.HTMLParser):
        text = ""

        def handle_data(self, data: str) -> None:
            self.text += data

    collect = Collect()
    collect.feed(page)
    assert collect.text == "a <b> & c"


def test_cli_prints_each_tokenizer(tmp_path, capsys) -> None:
    for kind in ("bpe", "unigram"):
        (tmp_path / "tokenizers" / kind).mkdir(parents=True)
        _train(kind).save(str(tmp_path / "tokenizers" / kind / "tokenizer.json"))
    main(["The capital of France", "--data", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["bpe", "unigram"]
    assert all("\x1b[" in line for line in out)
