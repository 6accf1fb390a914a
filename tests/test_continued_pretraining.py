"""Continued pretraining (``gpt.init_from``, ``bert.init_from``): a Hugging Face checkpoint,
a local directory here (a hub id resolves through the cache the same way), trained further
on our corpus by the same recipe -- through ``dvc exp run``, resumed after a crash, under
DDP -- with its own tokenizer (``tokenizers.<name>: pretrained``), and exported back to its
own architecture with a model card that names it. A tokenizer that is not the checkpoint's
is refused before any training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from tiny import hf_checkpoint

from llmworks.config import compose_config
from llmworks.spec import family
from llmworks.training.recipe import train

from conftest import (
    FAST,
    copy_repo,
    local_corpus_overrides,
    run_stage,
    sh,
    stage_overrides,
    train_metrics,
    write_text_corpus,
)

pytestmark = pytest.mark.slow


def init_from(base: Path, name: str = "base") -> list[str]:
    """The overrides that continue ``base``: its tokenizer as tokenizer ``name``, and GPT
    started from it, trained on 32-token windows."""
    return [
        f"+tokenizer@tokenizers.{name}=pretrained",
        f"tokenizers.{name}.name={base}",
        f"gpt.tokenizer={name}",
        f"gpt.init_from={base}",
        "gpt.data.seq_len=32",
    ]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, bpe_json: Path) -> Path:
    """A tiny random Llama with a tokenizer (its own tokenizer.json beside it)."""
    path = tmp_path_factory.mktemp("base") / "tiny-llama"
    hf_checkpoint("llama", path, vocab=300, tokenizer=bpe_json)
    return path


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, base: Path) -> Path:
    """A corpus encoded with the base model's tokenizer (the real stages)."""
    root = tmp_path_factory.mktemp("continued")
    args = stage_overrides(None, root, *local_corpus_overrides(write_text_corpus(root)),
                           *init_from(base), "+only=base")  # fmt: skip
    for stage in ("prepare_corpus", "train_tokenizer", "encode"):
        proc = run_stage(stage, *[a for a in args if stage != "prepare_corpus" or "only" not in a])
        assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def overrides(encoded: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return stage_overrides(
        "gpt", out, "experiment=smoke", "logger=none", *init_from(base), *extra,
        data=encoded / "data",
    )  # fmt: skip


def test_dvc_exp_run_continues_a_checkpoint_and_exports_it_back(base: Path, tmp_path) -> None:
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    repo = copy_repo(tmp_path / "llmworks")
    settings = [x for a in ["experiment=smoke", *init_from(base)] for x in ("-S", a)]
    # GPT's part of the pipeline: the stages it reads (its tokenizer, its shards) and itself
    sh("dvc", "exp", "run", "-n", "continued", *settings, "train@gpt", cwd=repo)
    metrics = train_metrics(repo, "gpt")
    assert metrics["steps"] == 10 and metrics["val_bpb"] > 0
    hf_dir = repo / "models" / "gpt" / "hf"
    exported = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    assert type(exported).__name__ == "LlamaForCausalLM"
    assert exported.config.hidden_size == 64 and exported.config.num_key_value_heads == 2
    from llmworks.families.gpt.model import GPT

    ours = GPT.load(repo / "models" / "gpt")
    idx = torch.randint(6, 300, (2, 20))
    with torch.no_grad():
        assert (ours(idx)[0] - exported(idx).logits).abs().max().item() <= 1e-4
    card = ModelCard.load(hf_dir / "README.md")
    assert f"**Continued from**: `{base}`" in card.text
    lock = (repo / "dvc.lock").read_text()
    assert "train@gpt" in lock and "data/tokens/base" in lock


def test_a_continued_run_starts_from_the_checkpoint_and_resumes_after_a_crash(
    base: Path, encoded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmworks.families.gpt.hf import from_hf

    def run(out: Path) -> dict:
        return train(family("gpt"), compose_config(overrides(encoded, out, base)))

    # before training, the module holds the checkpoint's weights
    built = family("gpt").build(
        compose_config(overrides(encoded, tmp_path / "x", base)), paths_of(tmp_path / "x", encoded)
    )
    imported, _ = from_hf(base)
    assert built.module.model.training  # dropout acts while it trains
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            built.module.model.state_dict().values(), imported.state_dict().values(), strict=True
        )
    )
    straight = run(tmp_path / "straight")
    original = ThroughputMonitor.on_train_batch_end

    def crash(self, trainer, *args):
        original(self, trainer, *args)
        if trainer.global_step == 7:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "crashed")
    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", original)
    resumed = run(tmp_path / "crashed")
    assert resumed["steps"] == straight["steps"] == 10
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-5)


def paths_of(out: Path, encoded: Path):
    from llmworks.paths import Paths

    return Paths.from_config(compose_config(stage_overrides(None, out, data=encoded / "data")))


def test_a_continued_run_trains_under_ddp(base: Path, encoded: Path, tmp_path: Path) -> None:
    proc = run_stage(
        "train", *overrides(encoded, tmp_path, base), "trainer=ddp_cpu", env=FAST, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = train_metrics(tmp_path, "gpt")
    assert metrics["world_size"] == 2 and metrics["steps"] == 10
    config = json.loads((tmp_path / "models" / "gpt" / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_a_tokenizer_that_is_not_the_checkpoints_is_refused_before_training(
    base: Path, encoded: Path, tmp_path: Path, bpe_json: Path
) -> None:
    """Shards of another tokenizer: their ids would mean other tokens to the model. Refused
    by the preflight, from the checkpoint's files, before Lightning loads."""
    other = tmp_path / "other"
    hf_checkpoint("llama", other, vocab=300, tokenizer=None)
    data = json.loads((base / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[100:102]  # two ordinary tokens swap their ids
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other / "tokenizer.json").write_text(json.dumps(data))
    args = overrides(encoded, tmp_path, base, f"gpt.init_from={other}")
    proc = run_stage("train", *args, env={**FAST, "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "is not the checkpoint's" in proc.stderr
    assert not (tmp_path / "runs").exists()
    assert "lightning" not in re.findall(r"\|\s+([\w.]+)$", proc.stderr, re.M)  # importtime


def test_bert_continues_a_checkpoint_with_its_wordpiece_tokenizer(
    tmp_path: Path, wordpiece_json: Path
) -> None:
    """``bert.init_from``: a BertForMaskedLM with its own WordPiece tokenizer, the corpus
    encoded by it, trained further by the stage and exported back as BertForMaskedLM whose
    card names it."""
    from huggingface_hub import ModelCard
    from transformers import AutoModelForMaskedLM

    from llmworks.families.bert.model import Bert

    vocab = json.loads(wordpiece_json.read_text())["model"]["vocab"]
    base = tmp_path / "tiny-bert"
    hf_checkpoint("bert", base, vocab=len(vocab), tokenizer=wordpiece_json,
                  pad_token_id=vocab["[PAD]"])  # fmt: skip
    settings = [
        "+tokenizer@tokenizers.base=pretrained", f"tokenizers.base.name={base}",
        "tokenizers.base.eot_token='[SEP]'", "bert.tokenizer=base", f"bert.init_from={base}",
    ]  # fmt: skip
    root = tmp_path / "run"
    root.mkdir()
    args = stage_overrides(None, root, *local_corpus_overrides(write_text_corpus(root)),
                           *settings, "+only=base")  # fmt: skip
    for stage in ("prepare_corpus", "train_tokenizer", "encode"):
        proc = run_stage(stage, *[a for a in args if stage != "prepare_corpus" or "only" not in a])
        assert proc.returncode == 0, proc.stderr[-3000:]
    args = stage_overrides("bert", root, "experiment=smoke", "logger=none", *settings)
    proc = run_stage("train", *args, env=FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert train_metrics(root, "bert")["steps"] == 6
    hf_dir = root / "models" / "bert" / "hf"
    exported = AutoModelForMaskedLM.from_pretrained(hf_dir).eval()
    assert type(exported).__name__ == "BertForMaskedLM"
    ours = Bert.load(root / "models" / "bert")
    idx = torch.randint(5, len(vocab), (2, 16))
    with torch.no_grad():
        assert (ours(idx)[0] - exported(idx).logits).abs().max().item() <= 1e-4
    assert f"**Continued from**: `{base}`" in ModelCard.load(hf_dir / "README.md").text
