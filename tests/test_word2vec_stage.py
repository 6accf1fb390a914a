"""The train@word2vec stage (``pipelines/train.py family=word2vec``) end to end on a tiny
corpus: artifacts, metrics, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from llmworks.config import compose_config
from llmworks.paths import Paths
from llmworks.spec import family
from llmworks.training import recipe

from conftest import FAST, run_stage, stage_overrides, tokenizer_spec, train_metrics


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """``paths.data`` with a tiny corpus DatasetDict as the prepare_corpus stage writes it."""
    from datasets import Dataset, DatasetDict

    rng = np.random.default_rng(0)
    words = [
        "king",
        "queen",
        "man",
        "woman",
        "river",
        "water",
        "sea",
        "boat",
        "computer",
        "music",
        "the",
        "of",
        "and",
        "a",
    ]
    texts = [" ".join(rng.choice(words, size=120)) + "." for _ in range(40)]
    root = tmp_path_factory.mktemp("w2v_stage") / "data"
    DatasetDict(
        {
            s: Dataset.from_dict({"text": texts[i::3]})
            for i, s in enumerate(["train", "validation", "test"])
        }  # fmt: skip
    ).save_to_disk(str(root / "corpus" / "dataset"))
    return root


def _overrides(data_root: Path, out: Path, *extra: str) -> list[str]:
    return stage_overrides("word2vec", out, "word2vec=smoke", *extra, data=data_root)


def test_presets_compose() -> None:
    cfg = compose_config(["word2vec=cbow"]).word2vec
    assert cfg.model.sg is False and cfg.data.window == 5 and cfg.model.negative == 5
    default = compose_config([]).word2vec
    assert default.model.sg is True and default.model.dim == 100 and default.tokenizer is None


@pytest.mark.parametrize("preset", ["smoke", "cbow"])
def test_stage_writes_vectors_checkpoints_and_metrics(
    data_root: Path, tmp_path: Path, preset: str
) -> None:
    extra = ["word2vec.model.dim=16", "word2vec.train.max_epochs=2", "word2vec.min_count=1"]
    extra.append("word2vec.train.log_every_n_steps=1")
    args = _overrides(data_root, tmp_path, *extra, f"word2vec={preset}")
    proc = run_stage("train", *args, env=FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "models" / "word2vec"
    for binary, name in ((False, "vectors.txt"), (True, "vectors.bin")):
        kv = KeyedVectors.load_word2vec_format(str(out / name), binary=binary)
        assert kv.vector_size == 16 and "king" in kv.key_to_index
    # the same artifacts and run state as every family: weights, checkpoints, curves
    assert (out / "model.safetensors").is_file() and (out / "vocab.json").is_file()
    ckpts = tmp_path / "runs" / "word2vec" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    metrics = train_metrics(tmp_path, "word2vec")
    assert metrics["tokens_per_s"] > 0 and metrics["steps"] > 0 and 0 < metrics["val_loss"] < 10
    val = (tmp_path / "metrics" / "train" / "word2vec_val.csv").read_text().splitlines()
    assert val[0] == "step,val_loss" and len(val) >= 3  # one validation per epoch, then final
    train = (tmp_path / "metrics" / "train" / "word2vec_train.csv").read_text().splitlines()
    assert (
        train[0] == "step,train_loss,lr,words_per_s_per_device"
        and len(train) - 1 == metrics["steps"]
    )
    lrs = [float(r.split(",")[2]) for r in train[1:]]
    assert lrs[0] == pytest.approx(0.05 if preset == "cbow" else 0.025) and lrs == sorted(
        lrs, reverse=True
    )


def test_missing_corpus_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_stage("train", *_overrides(tmp_path / "nowhere", tmp_path), env=FAST)
    assert proc.returncode == 2
    assert "corpus stage" in proc.stderr and "Traceback" not in proc.stderr


def test_subword_tokens_as_words(tmp_path: Path) -> None:
    """``word2vec.tokenizer=<name>`` trains on a trained tokenizer's shards."""
    import datasets

    from llmworks.data.encode import encode_corpus
    from llmworks.families.word2vec.data import subword_corpus
    from llmworks.tokenization.train import train_tokenizer

    rng = np.random.default_rng(0)
    words = ["kingdom", "queenly", "riverside", "watering", "seaside", "boating"]
    texts = {
        s: [" ".join(rng.choice(words, size=60)) for _ in range(30)]
        for s in ("train", "validation")
    }
    corpus = datasets.DatasetDict(
        {s: datasets.Dataset.from_dict({"text": t}) for s, t in texts.items()}
    )
    spec = tokenizer_spec("wordpiece", vocab_size=120)
    tok_dir = tmp_path / "data" / "tokenizers" / "wp"
    tok_dir.mkdir(parents=True)
    train_tokenizer(spec, corpus["train"]).save(str(tok_dir / "tokenizer.json"))
    encode_corpus(corpus, tok_dir / "tokenizer.json", tmp_path / "data" / "tokens" / "wp",
                  spec.eot_token, batch_size=100, batch_bytes=20_000)  # fmt: skip
    cfg = compose_config(
        _overrides(tmp_path / "data", tmp_path, "word2vec.tokenizer=wp", "logger=none")
    )
    vocab, (train, val) = subword_corpus(Paths.from_config(cfg), "wp", 1, ("train", "validation"))
    assert len(vocab) > 3 and (np.diff(vocab.counts) <= 0).all()
    assert train.ids.max() < len(vocab) and train.offsets[-1] == len(train.ids) and len(val.ids)
    metrics = recipe.train(family("word2vec"), cfg)
    assert metrics["steps"] > 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "models/word2vec/vectors.txt"))
    assert len(kv) == len(vocab) and kv.vector_size == cfg.word2vec.model.dim
