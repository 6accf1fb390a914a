"""The HTML report and its pictures: the page parses, every referenced file exists."""

from __future__ import annotations

import html.parser
from pathlib import Path

import numpy as np

from llmworks.evaluation.plots import (
    plot_attention,
    plot_training_curves,
    plot_word_map,
    project_2d,
)
from llmworks.report.html import Section, fmt, render, table_from_dict
from llmworks.training.logs import merge_sessions, read_metrics_csv, series, write_plots


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def _csv(path: Path) -> Path:
    path.write_text(
        "epoch,step,train_loss,val_loss,lr\n0,0,5.0,,0.001\n0,1,4.0,,0.001\n"
        "0,1,,4.5,\n0,2,3.5,,0.0005\n"
    )
    return path


def test_metrics_csv_reads_sparse_lightning_rows(tmp_path: Path) -> None:
    log = read_metrics_csv(_csv(tmp_path / "metrics.csv"))
    assert series(log, "train_loss")[1].tolist() == [5.0, 4.0, 3.5]
    assert series(log, "val_loss")[0].tolist() == [1] and series(log, "val_loss")[1].tolist() == [
        4.5
    ]


def test_a_resumed_session_replaces_the_steps_it_trains_again(tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text("step,train_loss,val_loss\n0,5.0,\n1,4.0,\n1,,4.4\n2,3.0,\n3,2.9,\n")
    # resumed from the step-1 checkpoint; the validation loop's own step numbers do not count
    second = tmp_path / "b.csv"
    second.write_text("step,train_loss,val_loss\n2,3.1,\n0,,\n3,2.8,\n")
    log = merge_sessions([first, second, tmp_path / "missing.csv"])
    assert series(log, "train_loss")[1].tolist() == [5.0, 4.0, 3.1, 2.8]
    assert series(log, "val_loss")[1].tolist() == [4.4]
    out = write_plots(log, {"train": tmp_path / "train.csv"}, {"train": {"loss": "train_loss"}})
    assert out["train"].read_text().splitlines() == ["step,loss", "0,5", "1,4", "2,3.1", "3,2.8"]


def test_table_cells_read_alike() -> None:
    """Large floats (word2vec's tokens/s) print as whole numbers like the integers beside
    them, not in scientific notation; small ones keep four significant digits."""
    assert fmt(479539.18) == "479,539" and fmt(4066.01) == "4,066" and fmt(1_640_800) == "1,640,800"
    assert fmt(0.25464) == "0.2546" and fmt(133.76) == "133.8" and fmt(-2.5e-5) == "-2.5e-05"
    assert fmt(True) == "True" and fmt("<b>") == "&lt;b&gt;"


def test_report_renders_with_all_pictures(tmp_path: Path) -> None:
    curves = plot_training_curves(
        {"gpt": read_metrics_csv(_csv(tmp_path / "m.csv")), "none": {}},
        tmp_path / "fig" / "curves.png",
    )
    words = [f"w{i}" for i in range(30)]
    word_map = plot_word_map(
        words,
        np.random.default_rng(0).normal(size=(30, 8)),
        tmp_path / "fig" / "map.png",
        highlight=["w1"],
    )
    att = np.random.default_rng(0).random((2, 2, 5, 5))
    heat = plot_attention(att, list("abcde"), tmp_path / "fig" / "att.png", "GPT")
    for png in (curves, word_map, heat):
        assert png is not None and png.read_bytes()[:4] == b"\x89PNG"

    header, rows = table_from_dict(
        {
            "bpe": {"bytes_per_token": 3.5, "vocab": 8192},
            "wordpiece": {"bytes_per_token": 3.9, "vocab": 8192},
        }
    )
    section = Section(
        "Tokenizers",
        tables=[("test split", header, rows)],
        figures=[("curves", curves), ("map", word_map), ("attention", heat)],
        samples={
            "settings": {"top_k": 5},
            "samples": [{"prompt": "Once", "mode": "greedy", "completion": " upon a <time>"}],
        },
    )
    index = render("llmworks report", "experiment smoke", [section], tmp_path / "report")
    parser = _Refs()
    parser.feed(index.read_text())
    assert parser.tags.count("table") == 1 and parser.tags.count("img") == 3
    assert all((index.parent / ref).is_file() for ref in parser.refs)
    assert "&lt;time&gt;" in index.read_text()


def test_word_map_projections_keep_clusters_apart(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centres = np.zeros((2, 16))
    centres[1, 0] = 20.0
    vectors = np.concatenate([c + rng.normal(size=(15, 16)) for c in centres])
    for method in ("pca", "tsne"):
        xy = project_2d(vectors, method)
        a, b = xy[:15], xy[15:]
        within = max(np.ptp(a, axis=0).max(), np.ptp(b, axis=0).max())
        assert np.linalg.norm(a.mean(0) - b.mean(0)) > within, method
    png = plot_word_map([f"w{i}" for i in range(30)], vectors, tmp_path / "t.png", method="tsne")
    assert png.read_bytes()[:4] == b"\x89PNG"
