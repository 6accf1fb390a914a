"""The train_word2vec entry point end to end on a tiny corpus: artifacts, metrics, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors

from llmworks.config import compose_config

from conftest import run_stage

FAST = {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


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
    return [
        "word2vec=smoke",
        f"paths.data={data_root}",
        f"paths.models={out / 'models'}",
        f"paths.metrics={out / 'metrics'}",
        f"logger.dir={out}",
        f"hydra.run.dir={out / 'h'}",
        *extra,
    ]


def test_presets_compose() -> None:
    cfg = compose_config(["word2vec=cbow"]).word2vec
    assert cfg.sg is False and cfg.window == 5 and cfg.negative == 5
    default = compose_config([]).word2vec
    assert default.sg is True and default.dim == 100 and default.tokenizer is None


@pytest.mark.parametrize("preset", ["smoke", "cbow"])
def test_stage_writes_vectors_checkpoint_and_metrics(
    data_root: Path, tmp_path: Path, preset: str
) -> None:
    extra = ["word2vec.dim=16", "word2vec.epochs=1", "word2vec.min_count=1"]
    args = _overrides(data_root, tmp_path, *extra)
    args[0] = f"word2vec={preset}"
    proc = run_stage("train_word2vec", *args, env=FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "models" / "word2vec"
    for binary, name in ((False, "vectors.txt"), (True, "vectors.bin")):
        kv = KeyedVectors.load_word2vec_format(str(out / name), binary=binary)
        assert kv.vector_size == 16 and "king" in kv.key_to_index
    assert (out / "word2vec.ckpt").is_file()
    metrics = json.loads((tmp_path / "metrics" / "word2vec.json").read_text())
    for key in ("ws353_rho", "simlex_rho", "analogy_acc", "analogy_coverage", "words_per_s",
                "ws353_oov", "simlex_oov"):  # fmt: skip
        assert key in metrics
    assert metrics["words_per_s"] > 0 and 0 < metrics["ws353_oov"] <= 1
    assert json.loads((out / "neighbours.json").read_text())


def test_missing_corpus_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_stage("train_word2vec", *_overrides(tmp_path / "nowhere", tmp_path), env=FAST)
    assert proc.returncode == 2
    assert "prepare_corpus" in proc.stderr and "Traceback" not in proc.stderr


def test_subword_tokens_as_words(tmp_path: Path) -> None:
    """``word2vec.tokenizer=<name>`` trains on a trained tokenizer's shards."""
    import datasets

    from llmworks.data.encode import encode_corpus
    from llmworks.tokenization.train import TokenizerSpec, train_tokenizer
    from llmworks.training.word2vec_module import fit_word2vec, subword_corpus

    rng = np.random.default_rng(0)
    words = ["kingdom", "queenly", "riverside", "watering", "seaside", "boating"]
    texts = [" ".join(rng.choice(words, size=60)) for _ in range(30)]
    corpus = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts})})
    spec = TokenizerSpec(type="wordpiece", vocab_size=120, lowercase=True)
    tok_dir = tmp_path / "data" / "tokenizers" / "wp"
    tok_dir.mkdir(parents=True)
    train_tokenizer(spec, corpus["train"]).save(str(tok_dir / "tokenizer.json"))
    encode_corpus(corpus, tok_dir / "tokenizer.json", tmp_path / "data" / "tokens" / "wp",
                  spec.eot_token)  # fmt: skip
    cfg = compose_config(
        ["word2vec=smoke", "word2vec.tokenizer=wp", f"paths.data={tmp_path / 'data'}"]
    )
    vocab, corp = subword_corpus(cfg, "wp")
    assert len(vocab) > 3 and (np.diff(vocab.counts) <= 0).all()
    assert corp.ids.max() < len(vocab) and corp.offsets[-1] == len(corp.ids)
    module, _, _ = fit_word2vec(vocab, corp, cfg.word2vec, {"accelerator": "cpu", "devices": 1})
    assert module.model.vectors.shape == (len(vocab), cfg.word2vec.dim)
