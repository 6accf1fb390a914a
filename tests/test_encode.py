"""Stage 3: token shards decode back to the corpus, and stale shards are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
from tokenizers import Tokenizer

from llmworks.data.encode import text_batches
from llmworks.data.shards import open_shards
from llmworks.errors import LlmworksError
from llmworks.words import count_words

from conftest import local_corpus_overrides, run_stage, stage_overrides, write_text_corpus


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoded once for the module; the tests only read it."""
    tmp_path = tmp_path_factory.mktemp("encoded")
    overrides = [
        *stage_overrides(None, tmp_path),
        *local_corpus_overrides(write_text_corpus(tmp_path)),
        "encode.batch_size=7",
    ]
    for script in ("prepare_corpus", "train_tokenizer", "encode"):
        result = run_stage(script, *overrides)
        assert result.returncode == 0, result.stderr
    return tmp_path / "data"


def test_shards_hold_every_document_in_order(encoded: Path) -> None:
    corpus = datasets.load_from_disk(str(encoded / "corpus" / "dataset"))
    for name in ("bpe", "wordpiece", "unigram"):
        tok_path = encoded / "tokenizers" / name / "tokenizer.json"
        tok = Tokenizer.from_file(str(tok_path))
        shards = open_shards(encoded / "tokens" / name, tok_path)
        meta = json.loads((encoded / "tokens" / name / "meta.json").read_text())
        assert meta["dtype"] == "uint16" and shards.vocab_size == tok.get_vocab_size()
        for split in ("train", "validation", "test"):
            part = shards.split(split)
            texts = corpus[split]["text"]
            assert part.n_docs == len(texts) == meta["splits"][split]["docs"]
            assert part.n_tokens == meta["splits"][split]["tokens"]
            assert meta["splits"][split]["bytes"] == sum(len(t.encode()) for t in texts)
            words = sum(count_words(t) for t in texts)  # "漢字": two words
            assert meta["splits"][split]["words"] == words
            text = shards.text_per_token(split)
            assert text.words == pytest.approx((words + len(texts)) / part.n_tokens)
            for i in range(len(texts)):  # every document, across batch boundaries
                expected = tok.encode(texts[i], add_special_tokens=False).ids
                assert part.document(i).tolist() == expected
                assert int(part.document(i, keep_separator=True)[-1]) == shards.separator_id
    bpe = open_shards(encoded / "tokens" / "bpe")
    doc = bpe.split("train").document(0)
    tok = Tokenizer.from_file(str(encoded / "tokenizers" / "bpe" / "tokenizer.json"))
    assert tok.decode(doc.tolist()) == corpus["train"][0]["text"]
    assert np.all(np.diff(bpe.split("train").offsets) > 0)


def test_shards_from_another_tokenizer_are_refused(encoded: Path) -> None:
    other = encoded / "tokenizers" / "wordpiece" / "tokenizer.json"
    with pytest.raises(LlmworksError, match="different tokenizer"):
        open_shards(encoded / "tokens" / "bpe", other)
    with pytest.raises(LlmworksError, match=r"meta.json does not exist; .*\(dvc repro encode\)"):
        open_shards(encoded / "tokens" / "missing")


def test_batches_are_capped_by_documents_and_bytes() -> None:
    texts = ["a" * 10, "b" * 30, "c" * 500, "d" * 5, "é" * 10, "f" * 5, "g" * 5]
    split = datasets.Dataset.from_dict({"text": texts})
    batches = list(text_batches(split, batch_size=2, batch_bytes=45))
    assert [b for batch, _ in batches for b in batch] == texts  # every text, in order
    assert [len(batch) for batch, _ in batches] == [2, 1, 2, 2]
    assert [size for _, size in batches] == [40, 500, 25, 10]  # é: two bytes
    assert all(size <= 45 or len(batch) == 1 for batch, size in batches)  # a big one alone


def test_shards_do_not_depend_on_the_batching(encoded: Path, tmp_path: Path) -> None:
    """One document per batch (a byte cap below every document) gives the same files as
    batches of seven."""
    for part in ("corpus", "tokenizers"):
        shutil.copytree(encoded / part, tmp_path / "data" / part)
    overrides = [*stage_overrides(None, tmp_path), "encode.batch_bytes=1"]
    result = run_stage("encode", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("bpe", "wordpiece", "unigram"):
        for file in ("train.bin", "train.offsets.npy", "test.bin", "validation.offsets.npy"):
            again = (tmp_path / "data" / "tokens" / name / file).read_bytes()
            assert again == (encoded / "tokens" / name / file).read_bytes(), (name, file)
        meta = json.loads((tmp_path / "data" / "tokens" / name / "meta.json").read_text())
        first = json.loads((encoded / "tokens" / name / "meta.json").read_text())
        assert meta["splits"] == first["splits"]
