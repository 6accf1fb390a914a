"""Shared fixtures: every test runs offline, writes only under tmp_path, and drives the real
entry points (`python pipelines/<stage>.py ...`) the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parents[1]

# torch threads of a pytest-xdist worker: its share of the cores. Each process would
# otherwise start one thread per core, and two workers' stages would run twice as many
# threads as there are cores (on 2 cores the slowest modules took 11% longer so). Set in the
# worker (the controller's environment is what the workers start from), before anything
# imports torch; every stage a test starts inherits it. An OMP_NUM_THREADS already set wins.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

# a direct run that needs neither W&B nor more than one thread (most training tests)
FAST = {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}

OFFLINE_ENV = {
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "DVC_NO_ANALYTICS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_DIR", str(home / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf-datasets"))


def run_stage(
    script: str,
    *overrides: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run `python pipelines/<script>.py overrides...` and return the finished process."""
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "pipelines" / f"{script}.py"), *overrides],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Top-level entries of the repository that are outputs or local state, not the project.
_SKIP_TOP = {".git", ".venv", "data", "models", "runs", "metrics", "report", "wandb", "outputs",
             "multirun", "dvc.lock"}  # fmt: skip
_SKIP_ANY = {".pytest_cache", ".ruff_cache", "__pycache__", "tmp"}


def _ignore(directory: str, names: list[str]) -> list[str]:
    top = Path(directory) == REPO
    return [n for n in names if n in _SKIP_ANY or (top and n in _SKIP_TOP)]


def sh(
    *cmd: str,
    cwd: Path,
    check: bool = True,
    timeout: float = 900,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command (dvc, git) offline in ``cwd``; with ``check``, fail with its output."""
    env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def copy_repo(root: Path) -> Path:
    """A throwaway git clone of the project as it is in the working tree (no outputs)."""
    import shutil

    shutil.copytree(REPO, root, ignore=_ignore)
    sh("git", "init", "-q", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh(
        "git",
        "-c",
        "user.email=ci@llmworks",
        "-c",
        "user.name=ci",
        "commit",
        "-qm",
        "copy",
        cwd=root,
    )
    return root


def stage_overrides(
    family: str | None, root: Path, *extra: str, data: Path | None = None
) -> list[str]:
    """Overrides for a direct run of a stage (``python pipelines/<stage>.py ...``) that send
    everything it writes under ``root``, read the data from ``data`` (a prepared
    ``paths.data``; default ``root / "data"``) and, for ``pipelines/train.py``, train
    ``family``; then ``extra``."""
    return [
        *([f"family={family}"] if family else []),
        f"paths.data={data or root / 'data'}",
        f"paths.models={root / 'models'}",
        f"paths.runs={root / 'runs'}",
        f"paths.metrics={root / 'metrics'}",
        f"paths.report={root / 'report'}",
        f"logger.dir={root}",
        "hydra.run.dir=" + str(root / "hydra"),
        *extra,
    ]


def train_metrics(root: Path, family: str) -> dict[str, Any]:
    """``metrics/train/<family>.json`` of a run under ``root``."""
    import json

    return json.loads((root / "metrics" / "train" / f"{family}.json").read_text())


SAMPLE_PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Language models learn the statistics of text from very large corpora.",
    "A tokenizer splits raw text into pieces that a model can embed.",
    "Word vectors place words with similar neighbours close together in space.",
    "Masked language models predict hidden words from both sides of the context.",
    "Causal language models predict the next token from everything before it.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "The cat sat on the mat while the dog slept by the warm fire.",
    "Rivers flow to the sea, carrying water from mountains to the coast.",
    "Scientists measure the speed of light with great precision in the laboratory.",
    "Music and mathematics share patterns of rhythm, symmetry and proportion.",
    "Emoji 🙂 and CJK text 漢字 must survive a byte-level round trip intact.",
]


@pytest.fixture
def text_corpus(tmp_path: Path) -> Path:
    """A small local corpus: two UTF-8 text files with blank-line separated paragraphs."""
    return write_text_corpus(tmp_path)


def write_text_corpus(parent: Path) -> Path:
    """The ``text_corpus`` files under ``parent`` (for fixtures of a wider scope)."""
    root = parent / "corpus_files"
    root.mkdir()
    for f in range(2):
        paras = [
            f"{p} Document {f}-{i} adds its own words: alpha{i} beta{f}."
            for i, p in enumerate(SAMPLE_PARAGRAPHS * 3)
        ]
        (root / f"part{f}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return root


def local_corpus_overrides(files: Path | str, vocab: int = 400) -> list[str]:
    return [
        "corpus=local",
        f"corpus.data_files={files}",
        "corpus.split.validation=0.2",
        "corpus.split.test=0.2",
        f"tokenizers.bpe.vocab_size={max(vocab, 300)}",
        f"tokenizers.wordpiece.vocab_size={vocab}",
        f"tokenizers.unigram.vocab_size={vocab}",
    ]


# ----------------------------------------------------------------------------- typed configs
# conf/ is the only source of values: tests take a preset from conf/ and override what they
# vary, as a user does on the command line.


@lru_cache(maxsize=32)
def _section(group: str, option: str) -> DictConfig:
    from llmworks.config import compose_config

    return compose_config([f"{group}={option}"])[group.split("@")[-1].split(".")[0]]


def preset(group: str, option: str, *keys: str) -> dict[str, Any]:
    """A section of a conf/ preset as a plain dict, e.g. ``preset("gpt", "default", "model")``."""
    node = _section(group, option)
    for key in keys:
        node = node[key]
    return OmegaConf.to_container(node, resolve=True)


def gpt_config(vocab_size: int, **overrides: Any):
    """``GPTConfig`` of ``conf/gpt/default.yaml`` with overrides."""
    from llmworks.config import typed
    from llmworks.families.gpt.model import GPTConfig

    values = preset("gpt", "default", "model") | overrides
    return typed(GPTConfig, values, "gpt.model", vocab_size=vocab_size)


def bert_config(vocab_size: int, pad_id: int = 0, **overrides: Any):
    """``BertConfig`` of ``conf/bert/default.yaml`` with overrides."""
    from llmworks.config import typed
    from llmworks.families.bert.model import BertConfig

    values = preset("bert", "default", "model") | overrides
    return typed(BertConfig, values, "bert.model", vocab_size=vocab_size, pad_id=pad_id)


def tokenizer_spec(kind: str, **overrides: Any):
    """``TokenizerSpec`` of ``conf/tokenizer/<kind>.yaml`` with overrides; WordPiece's
    ``strip_accents=auto`` (which the stage resolves against the corpus) as BERT's stripping."""
    from llmworks.config import typed
    from llmworks.tokenization.build import TokenizerSpec

    resolved = {"strip_accents": True} if kind == "wordpiece" else {}
    values = preset(f"tokenizer@tokenizers.{kind}", kind, kind) | resolved | overrides
    return typed(TokenizerSpec, values, f"tokenizers.{kind}")


def mlm_data_config(**overrides: Any):
    """``MLMDataConfig`` of ``conf/bert/smoke.yaml`` with overrides."""
    from llmworks.config import typed
    from llmworks.families.bert.settings import MLMDataConfig

    return typed(MLMDataConfig, preset("bert", "smoke", "data") | overrides, "bert.data")


def optim_config(**overrides: Any):
    """``OptimConfig`` of ``conf/gpt/default.yaml`` with overrides."""
    from llmworks.config import typed
    from llmworks.training.optim import OptimConfig

    return typed(OptimConfig, preset("gpt", "default", "optim") | overrides, "gpt.optim")


def make_data(root: Path) -> Path:
    """A corpus, its three tokenizers and token shards under ``root``, made by the real
    stages (``root / "data"``)."""
    files = root / "corpus_files"
    files.mkdir(parents=True)
    for f in range(4):
        paras = [f"{p} Part {f}-{i}." for i, p in enumerate(SAMPLE_PARAGRAPHS * 6)]
        (files / f"part{f}.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    args = stage_overrides(None, root, *local_corpus_overrides(files), "corpus.sample_by=document")
    for stage in ("prepare_corpus", "train_tokenizer", "encode"):
        proc = run_stage(stage, *args, env={"WANDB_MODE": "disabled"})
        assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data`` of a small corpus with its three tokenizers and token shards, made once
    by the real stages for every test that trains; tests read it and never write into it."""
    return make_data(tmp_path_factory.mktemp("prepared")) / "data"


# ----------------------------------------------------------------------------- tiny data
# Built once per session, read by many tests, written by none.


@pytest.fixture(scope="session")
def bpe_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-token byte-level BPE ``tokenizer.json`` (``tiny.train_bpe``)."""
    from tiny import train_bpe

    return train_bpe(tmp_path_factory.mktemp("bpe") / "tokenizer.json")


@pytest.fixture(scope="session")
def wordpiece_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 200-token WordPiece ``tokenizer.json`` framing ``[CLS] ... [SEP]``, as BERT reads."""
    from tiny import TEXT

    from llmworks.tokenization.build import add_bert_framing, build_tokenizer

    tok, trainer = build_tokenizer(tokenizer_spec("wordpiece", vocab_size=200))
    tok.train_from_iterator(TEXT * 20, trainer)
    add_bert_framing(tok)
    path = tmp_path_factory.mktemp("wordpiece") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def gpt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data`` with a tiny BPE tokenizer and its shards (``tiny.write_shards``)."""
    from tiny import write_shards

    root = tmp_path_factory.mktemp("gpt_data") / "data"
    write_shards(root)
    return root


def _documents(n: int) -> list[str]:
    # documents of 1 to 6 paragraphs: some fit many to a sequence, some need several windows
    return [
        " ".join(SAMPLE_PARAGRAPHS[(i + j) % len(SAMPLE_PARAGRAPHS)] for j in range(1 + i % 6))
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def bert_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny lower-cased WordPiece tokenizer and its token shards: (tokenizer.json, shards)."""
    import datasets

    from llmworks.data.encode import encode_corpus
    from llmworks.tokenization.train import train_tokenizer

    root = tmp_path_factory.mktemp("bert_data")
    corpus = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": _documents(60)}),
            "validation": datasets.Dataset.from_dict({"text": _documents(12)[::-1]}),
        }
    )
    spec = tokenizer_spec("wordpiece", vocab_size=300)
    tok = train_tokenizer(spec, corpus["train"])
    tok_json = root / "tokenizer.json"
    tok.save(str(tok_json))
    encode_corpus(
        corpus, tok_json, root / "tokens", spec.eot_token, batch_size=100, batch_bytes=20_000
    )
    return tok_json, root / "tokens"


@pytest.fixture(scope="session")
def bert_data(bert_shards: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``paths.data`` laid out as the pipeline does: tokenizers/wordpiece + tokens/wordpiece."""
    import shutil

    tok_json, shards_dir = bert_shards
    root = tmp_path_factory.mktemp("bert_stage") / "data"
    (root / "tokenizers" / "wordpiece").mkdir(parents=True)
    shutil.copyfile(tok_json, root / "tokenizers" / "wordpiece" / "tokenizer.json")
    shutil.copytree(shards_dir, root / "tokens" / "wordpiece")
    return root
