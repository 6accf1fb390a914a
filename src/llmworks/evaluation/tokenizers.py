"""The tokenizers' part of the evaluate stage: compression and coverage of every trained
tokenizer on the test split, and one sentence cut into coloured tokens by each."""

from __future__ import annotations

from llmworks.evaluation.example_text import example_text, test_sample
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.token_view import pieces, to_html
from llmworks.evaluation.trained import load_tokenizer
from llmworks.io import write_json
from llmworks.tokenization.train import spec_from_config, tokenizer_stats

TOKEN_VIEWS_FILE = "token_views.json"


def tokenizers(rec: Recorder) -> None:
    """``tokenizers.<name>.*`` on the test split (``tokenizer_stats``, as the tokenizer stage
    measures the validation split) and ``token_views.json`` for the report."""
    text, why = example_text(str(rec.cfg.evaluate.token_view_text), test_sample(rec))
    results, views = {}, {}
    for name in rec.cfg.tokenizers:
        if not rec.paths.tokenizer(name).is_file():
            rec.skip(f"tokenizer {name}", f"no {rec.paths.tokenizer(name)}")
            continue
        tok = load_tokenizer(rec.paths, name)
        spec = spec_from_config(rec.cfg.tokenizers[name], name)
        stats = tokenizer_stats(tok, rec.corpus["test"], spec)
        results[name] = {k: v for k, v in stats.items() if k != "type"}
        n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
        views[name] = {"html": to_html(pieces(tok, text)), "tokens": n_tokens}
    if not results:
        return
    rec.record("tokenizers", results)
    write_json(rec.assets / TOKEN_VIEWS_FILE, {"text": text, "views": views})
    columns = ["tokenizer", *next(iter(results.values()))]
    rec.table(
        "tokenizers", "On the test split", columns, [[n, *r.values()] for n, r in results.items()]
    )
    rec.html("<h3>How each tokenizer cuts one sentence</h3>")
    if why:
        rec.html(f"<p><i>{why}.</i></p>")
    for name, view in views.items():
        rec.html(f"<p><b>{name}</b> ({view['tokens']} tokens)<br>{view['html']}</p>")
