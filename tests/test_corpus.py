"""Stage 1: corpus loading, cleaning, splitting and its failure modes, through the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from llmworks.config import compose_config
from llmworks.corpus.clean import assign_split, document_hash, normalize_text
from llmworks.corpus.config import CorpusConfig, corpus_config
from llmworks.corpus.sources import _group_wikitext, load_documents
from llmworks.corpus.wiki_sample import clean_article, iter_articles
from llmworks.words import count_words

from conftest import local_corpus_overrides, run_stage, stage_overrides


def local_corpus(*overrides: str) -> CorpusConfig:
    """The typed ``corpus=local`` section with overrides, as the corpus stage sees it."""
    return corpus_config(compose_config(["corpus=local", *overrides]))


def test_normalize_text_nfc_whitespace_and_paragraphs() -> None:
    raw = "Cafe\u0301  au\tlait\r\n\r\n\r\n\r\nsecond   para \n"
    assert normalize_text(raw) == "Caf\u00e9 au lait\n\nsecond para"


def test_split_depends_only_on_the_document() -> None:
    docs = [f"document number {i}" for i in range(2000)]
    splits = [assign_split(document_hash(d), 0.1, 0.1) for d in docs]
    again = [assign_split(document_hash(d), 0.1, 0.1) for d in reversed(docs)][::-1]
    assert splits == again
    share = {s: splits.count(s) / len(docs) for s in ("train", "validation", "test")}
    assert 0.07 < share["validation"] < 0.13 and 0.07 < share["test"] < 0.13


def test_clean_article_strips_wiki_leftovers() -> None:
    markup = (
        "'''Foo''' is a ''bar'' ( ) thing.\n\n==History==\nIt began [[long|long ago]].\n"
        "* a list item with enough words in it\n* x\n[[File:pic.jpg|thumb|caption]]\n"
        "==References==\n* Some book, 1999.\n==See also==\n* Other\n"
    )
    text = clean_article(markup)
    assert "'" not in text and "==" not in text and "()" not in text
    assert text.startswith("Foo is a bar thing.")
    assert "It began long ago." in text
    assert "a list item with enough words in it" in text
    assert "Some book" not in text and "Other" not in text


def test_embedded_wiki_sample_is_real_prose() -> None:
    articles = list(iter_articles())
    words = sum(len(a["text"].split()) for a in articles)
    assert 100 <= len(articles) <= 110
    assert 400_000 < words < 500_000
    anarchism = next(a for a in articles if a["title"] == "Anarchism")
    assert anarchism["text"].startswith("Anarchism is a political philosophy")
    assert "'''" not in anarchism["text"] and "==" not in anarchism["text"]


def test_wikitext_lines_regroup_into_articles() -> None:
    lines = [
        "",
        " = Alpha = ",
        "",
        " First para . ",
        " = = Sub = = ",
        " More . ",
        " = Beta = ",
        " Other text . ",
    ]
    docs = [d["text"] for d in _group_wikitext(datasets.Dataset.from_dict({"text": lines}))]
    assert docs == ["First para .\n\nMore .", "Other text ."]


def test_prepare_local_corpus_through_entry_point(tmp_path: Path, text_corpus: Path) -> None:
    dup = text_corpus / "dup.txt"
    dup.write_text((text_corpus / "part0.txt").read_text() + "\n\n   \n\n", encoding="utf-8")
    result = run_stage(
        "prepare_corpus",
        *stage_overrides(None, tmp_path),
        *local_corpus_overrides(f"{text_corpus}/*.txt"),
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "data" / "corpus"
    ds = datasets.load_from_disk(str(out / "dataset"))
    stats = json.loads((out / "corpus_stats.json").read_text())
    assert set(ds) == {"train", "validation", "test"}
    texts = [t for s in ds for t in ds[s]["text"]]
    assert len(texts) == len(set(texts)) == 72  # duplicates from dup.txt dropped
    assert all(texts)
    assert stats["total"]["documents"] == 72
    assert stats["train"]["words"] == sum(count_words(t) for t in ds["train"]["text"])
    assert stats["validation"]["bytes"] == sum(len(t.encode()) for t in ds["validation"]["text"])


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_local_json_and_parquet(tmp_path: Path, fmt: str) -> None:
    rows = [{"body": f"Document {i} talks about topic {i % 7} at some length."} for i in range(40)]
    path = tmp_path / f"docs.{fmt}"
    datasets.Dataset.from_list(rows).to_json(
        path
    ) if fmt == "jsonl" else datasets.Dataset.from_list(rows).to_parquet(path)
    corpus = local_corpus(f"corpus.data_files={path}", "corpus.text_field=body")
    ds = load_documents(corpus, tmp_path / "work")
    assert ds.column_names == ["text"] and ds["text"] == [r["body"] for r in rows]


def _write_split_files(root: Path) -> dict[str, list[str]]:
    """Three files of distinct paragraphs; one paragraph of the training file is repeated in
    the test file (a source's own splits may overlap, and are kept as they are)."""
    docs = {
        split: [f"This {split} paragraph number {i} is about topic {i % 5}." for i in range(n)]
        for split, n in (("train", 30), ("valid", 6), ("test", 5))
    }
    docs["test"].append(docs["train"][0])
    for split, paragraphs in docs.items():
        (root / f"{split}.txt").write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return docs


def test_split_by_source_keeps_the_given_splits(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    docs = _write_split_files(files)
    by_source = [
        "corpus=local",
        "corpus.split.by=source",
        f"corpus.data_files={{train:{files}/train.txt,valid:{files}/valid.txt,test:{files}/te*.txt}}",
    ]
    result = run_stage("prepare_corpus", *stage_overrides(None, tmp_path / "a"), *by_source)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "a" / "data" / "corpus"
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert ds["train"]["text"] == docs["train"]
    assert ds["validation"]["text"] == docs["valid"]  # "valid" is the validation split
    assert ds["test"]["text"] == docs["test"]  # the overlap with train is kept
    stats = json.loads((out / "corpus_stats.json").read_text())
    assert stats["source"]["split_by"] == "source"
    assert stats["test"]["documents"] == 6

    # the same text split by hash: every document where its hash puts it, duplicates dropped
    by_hash = ["corpus=local", f"corpus.data_files={files}", "corpus.split.validation=0.2"]
    result = run_stage("prepare_corpus", *stage_overrides(None, tmp_path / "b"), *by_hash)
    assert result.returncode == 0, result.stderr
    hashed = datasets.load_from_disk(str(tmp_path / "b" / "data" / "corpus" / "dataset"))
    every = {t for split in docs.values() for t in split}
    assert sorted(t for s in hashed for t in hashed[s]["text"]) == sorted(every)
    for split in hashed:
        for text in hashed[split]["text"]:
            assert assign_split(document_hash(text), 0.2, 0.05) == split


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["corpus.data_files={train:X/train.txt,test:X/test.txt}"], "corpus.split.by=source"),
        (
            ["corpus.split.by=source", "corpus.data_files={train:X/train.txt,test:X/test.txt}"],
            "missing: ['validation']",
        ),
        (["corpus.split.by=source", "corpus.data_files=X"], "one entry per split"),
        (
            [
                "corpus.split.by=source",
                "corpus.data_files={train:X/train.txt,dev:X/valid.txt,"
                "test:X/test.txt,extra:X/test.txt}",
            ],
            "['extra'] are not one of",
        ),
        (["corpus.split.by=random", "corpus.data_files=X"], "expected hash or source"),
    ],
)
def test_split_modes_reject_what_they_cannot_honour(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    _write_split_files(files)
    overrides = [o.replace("X", str(files)) for o in overrides]
    result = run_stage(
        "prepare_corpus", *stage_overrides(None, tmp_path), "corpus=local", *overrides
    )
    _assert_user_error(result, message)
    assert "Traceback" not in result.stderr


def _assert_user_error(result, *needles: str) -> None:
    assert result.returncode != 0
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_bad_inputs_fail_clearly_and_keep_earlier_outputs(
    tmp_path: Path, text_corpus: Path
) -> None:
    paths = stage_overrides(None, tmp_path)
    ok = run_stage("prepare_corpus", *paths, *local_corpus_overrides(text_corpus))
    assert ok.returncode == 0, ok.stderr
    dataset_dir = tmp_path / "data" / "corpus" / "dataset"
    before = sorted(p.name for p in dataset_dir.iterdir())
    stats_before = (tmp_path / "data" / "corpus" / "corpus_stats.json").read_text()

    missing = run_stage(
        "prepare_corpus", *paths, *local_corpus_overrides(tmp_path / "nope" / "*.txt")
    )
    _assert_user_error(missing, "no file matches", "nope")

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("\n\n   \n", encoding="utf-8")
    _assert_user_error(
        run_stage("prepare_corpus", *paths, *local_corpus_overrides(empty / "a.txt")),
        "no non-empty documents",
    )

    latin = tmp_path / "latin1"
    latin.mkdir()
    (latin / "a.txt").write_bytes(
        "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n\n".encode("latin-1") * 20
    )
    _assert_user_error(
        run_stage("prepare_corpus", *paths, *local_corpus_overrides(latin / "a.txt")),
        "not valid UTF-8",
        "corpus.encoding",
    )

    unknown = run_stage("prepare_corpus", *paths, "corpus.no_such_key=1")
    _assert_user_error(unknown, "corpus.no_such_key")

    assert sorted(p.name for p in dataset_dir.iterdir()) == before
    assert (tmp_path / "data" / "corpus" / "corpus_stats.json").read_text() == stats_before


def test_latin1_corpus_loads_with_its_encoding(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes("Caf\u00e9 cr\u00e8me\n\nna\u00efve text\n".encode("latin-1"))
    corpus = local_corpus(f"corpus.data_files={tmp_path / 'a.txt'}", "corpus.encoding=latin-1")
    texts = load_documents(corpus, tmp_path / "work")["text"]
    assert [t.strip() for t in texts] == ["Caf\u00e9 cr\u00e8me", "na\u00efve text"]


def test_hub_corpus_offline_fails_fast_with_a_local_hint(tmp_path: Path) -> None:
    result = run_stage(
        "prepare_corpus", *stage_overrides(None, tmp_path), "corpus=wikitext2", timeout=60
    )
    _assert_user_error(result, "wikitext", "corpus=local")


def test_hub_corpus_without_network_fails_fast_even_without_offline_flag(tmp_path: Path) -> None:
    import time

    start = time.monotonic()
    result = run_stage(
        "prepare_corpus",
        *stage_overrides(None, tmp_path),
        "corpus=tinystories",
        env={
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_OFFLINE": "0",
            "HF_ENDPOINT": "https://127.0.0.1:9",
        },
        timeout=60,
    )
    _assert_user_error(result, "unreachable", "corpus=local")
    assert time.monotonic() - start < 30


def test_normalization_strips_terminal_escapes_and_control_characters() -> None:
    from llmworks.corpus.clean import normalize_text

    coloured = (
        "\x1b[33mWARN\x1b[0m: disk\x07 full\x00 now\tthen\x0c ok\n\n\n\nnext \x1b]0;t\x07para"
    )
    assert normalize_text(coloured) == "WARN: disk full now then ok\n\nnext para"
    assert normalize_text("Ёлка й café\n\nZürich") == "Ёлка й café\n\nZürich"  # letters stay


def test_a_document_cap_says_how_many_documents_it_kept(tmp_path: Path, text_corpus: Path) -> None:
    from conftest import local_corpus_overrides, run_stage, stage_overrides

    proc = run_stage("prepare_corpus", *stage_overrides(None, tmp_path),
                     *local_corpus_overrides(text_corpus), "corpus.max_documents=5",
                     "logger=none")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "corpus.max_documents=5: kept 5 of 72 documents" in proc.stdout + proc.stderr


def _write_jsonl(path: Path, docs: int, chars: int) -> Path:
    """``docs`` distinct documents of about ``chars`` characters each, one JSON per line."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(docs):
            words = " ".join(f"w{(i * 7919 + j) % 100003}" for j in range(chars // 8))
            f.write(json.dumps({"text": f"Document {i}. {words}"}) + "\n")
    return path


def test_a_streamed_local_corpus_keeps_the_head_and_says_when_it_ends(tmp_path: Path) -> None:
    source = _write_jsonl(tmp_path / "big.jsonl", 300, 400)
    for cap, expected in ((120, 120), (1000, 300)):
        root = tmp_path / f"cap{cap}"
        result = run_stage(
            "prepare_corpus", *stage_overrides(None, root), "corpus=local",
            f"corpus.data_files={source}", "corpus.streaming=true", f"corpus.max_documents={cap}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        stats = json.loads((root / "data" / "corpus" / "corpus_stats.json").read_text())
        assert stats["total"]["documents"] == expected
        corpus = datasets.load_from_disk(str(root / "data" / "corpus" / "dataset"))
        texts = [t for split in corpus.values() for t in split["text"]]
        assert {int(t.split(".")[0].split()[1]) for t in texts} == set(range(expected))
        ended = "ended after 300 documents (corpus.max_documents=1000)"
        assert (ended in result.stdout + result.stderr) == (cap > 300)
    uncapped = run_stage(
        "prepare_corpus", *stage_overrides(None, tmp_path / "nocap"), "corpus=local",
        f"corpus.data_files={source}", "corpus.streaming=true", "corpus.max_documents=null",
    )  # fmt: skip
    assert uncapped.returncode == 2
    assert "a streaming corpus needs corpus.max_documents" in uncapped.stderr


def _peak_anonymous_mib(args: list[str]) -> tuple[int, float]:
    """Run a stage and poll its ``RssAnon`` (its own memory: heap, Python objects, Arrow
    buffers; not the pages of files it maps) until it exits: (exit status, peak MiB)."""
    import os
    import subprocess
    import sys
    import time

    from conftest import OFFLINE_ENV, REPO

    env = {**os.environ, **OFFLINE_ENV, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(REPO / "pipelines" / "prepare_corpus.py"), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            break
        time.sleep(0.01)
    proc.communicate(timeout=300)
    return proc.returncode, peak / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_streamed_head_twenty_times_larger_takes_no_more_memory(tmp_path: Path) -> None:
    """The streamed head goes to Arrow on disk in batches as it arrives: the corpus stage's
    own memory for an 80 MB head is that of a 4 MB one (within 7%; written in datasets' default
    batches of 1,000 documents it grew by 15%)."""
    source = _write_jsonl(tmp_path / "big.jsonl", 4000, 20_000)  # 80 MB
    peaks = {}
    for cap in (200, 4000):
        args = [*stage_overrides(None, tmp_path / f"cap{cap}"), "corpus=local",
                f"corpus.data_files={source}", "corpus.streaming=true",
                f"corpus.max_documents={cap}"]  # fmt: skip
        code, peaks[cap] = _peak_anonymous_mib(args)
        assert code == 0
        stats = json.loads((tmp_path / f"cap{cap}/data/corpus/corpus_stats.json").read_text())
        assert stats["total"]["documents"] == cap
    assert peaks[4000] <= 1.07 * peaks[200], peaks
