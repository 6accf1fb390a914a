"""The pipeline through DVC, in a throwaway copy of the repository: `dvc exp run -S ...`
composes conf/ into params.yaml and the stages use the overridden values; `dvc repro` uses
params.yaml as it is; stage params isolate the stages from each other's knobs."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmworks.tracking import offline_runs, read_offline_run

from conftest import OFFLINE_ENV, REPO

pytestmark = pytest.mark.slow

# Top-level entries that are outputs or local state, not part of the project.
_SKIP_TOP = {
    ".git",
    ".venv",
    "data",
    "models",
    "runs",
    "metrics",
    "report",
    "wandb",
    "outputs",
    "multirun",
    "dvc.lock",
}
_SKIP_ANY = {".pytest_cache", ".ruff_cache", "__pycache__", "tmp"}


def _ignore(directory: str, names: list[str]) -> list[str]:
    top = Path(directory) == REPO
    return [n for n in names if n in _SKIP_ANY or (top and n in _SKIP_TOP)]


def _sh(
    *cmd: str, cwd: Path, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE_ENV}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(cmd)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo") / "llmworks"
    shutil.copytree(REPO, root, ignore=_ignore)
    for cmd in (
        ("git", "init", "-q"),
        ("git", "add", "-A"),
        ("git", "-c", "user.email=ci@llmworks", "-c", "user.name=ci", "commit", "-qm", "copy"),
    ):
        _sh(*cmd, cwd=root)
    return root


def _exp_show(repo: Path) -> list[dict]:
    return json.loads(_sh("dvc", "exp", "show", "--json", cwd=repo).stdout)


def test_smoke_experiment_runs_end_to_end(repo: Path) -> None:
    _sh("dvc", "exp", "run", "-n", "smoke-e2e", "-S", "experiment=smoke", cwd=repo)
    stats = json.loads((repo / "data" / "corpus" / "corpus_stats.json").read_text())
    assert stats["total"]["documents"] == 24  # experiment=smoke's corpus.max_documents
    for name in ("bpe", "wordpiece", "unigram"):
        tok_stats = json.loads((repo / f"data/tokenizers/{name}/tokenizer_stats.json").read_text())
        assert tok_stats["vocab_size"] <= 600
        meta = json.loads((repo / f"data/tokens/{name}/meta.json").read_text())
        assert meta["splits"]["train"]["tokens"] > 1000
    gpt = json.loads((repo / "metrics" / "gpt.json").read_text())
    bert = json.loads((repo / "metrics" / "bert.json").read_text())
    w2v = json.loads((repo / "metrics" / "word2vec.json").read_text())
    assert gpt["val_loss"] > 0 and gpt["val_bpb"] > 0 and gpt["tokens_per_s"] > 0
    assert bert["val_mlm_loss"] > 0 and 0 <= bert["val_mlm_acc"] <= 1
    assert w2v["val_loss"] > 0 and w2v["tokens_per_s"] > 0  # corpus words per second
    for family in ("word2vec", "bert", "gpt"):  # one recipe: the same run state for each
        ckpts = repo / "runs" / family / "checkpoints"
        assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"], family
    for path in (
        "models/gpt/model.safetensors",
        "models/gpt/hf/config.json",
        "models/bert/model.safetensors",
        "models/word2vec/vectors.txt",
        "models/word2vec/model.safetensors",
    ):
        assert (repo / path).is_file(), path
    shown = json.dumps(_exp_show(repo))
    assert "smoke-e2e" in shown and "bytes_per_token" in shown and "val_bpb" in shown
    _check_evaluation_and_report(repo)

    # dvc repro uses params.yaml as it is (the smoke values now): nothing to redo.
    status = json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout)
    assert status == {}
    repro = _sh("dvc", "repro", cwd=repo)
    assert "didn't change, skipping" in repro.stdout

    # A knob of one tokenizer invalidates that tokenizer alone (its shards follow from it).
    params = (repo / "params.yaml").read_text()
    changed_params = yaml.safe_load(params)
    changed_params["tokenizers"]["unigram"]["vocab_size"] = 601
    (repo / "params.yaml").write_text(yaml.safe_dump(changed_params, sort_keys=False))
    changed = set(json.loads(_sh("dvc", "status", "--json", cwd=repo).stdout))
    # (evaluate reads every tokenizer's settings too)
    assert changed == {"train_tokenizer@unigram", "evaluate"}
    (repo / "params.yaml").write_text(params)


def test_local_corpus_and_vocab_overrides_reach_the_stages(repo: Path, text_corpus: Path) -> None:
    _sh(
        "dvc",
        "exp",
        "run",
        "-n",
        "local-e2e",
        "-S",
        "experiment=smoke",
        "-S",
        "corpus=local",
        "-S",
        f"corpus.data_files={text_corpus}/*.txt",
        "-S",
        "corpus.split.validation=0.2",
        "-S",
        "corpus.split.test=0.2",
        "-S",
        "tokenizers.bpe.vocab_size=333",
        "-S",
        "tokenizers.wordpiece.vocab_size=300",
        "-S",
        "tokenizers.unigram.vocab_size=300",
        cwd=repo,
    )
    stats = json.loads((repo / "data" / "corpus" / "corpus_stats.json").read_text())
    # experiment=smoke caps the corpus at 24 documents; the command-line values win over it.
    assert stats["source"]["name"] == "local" and stats["total"]["documents"] == 24
    bpe = json.loads((repo / "data/tokenizers/bpe/tokenizer_stats.json").read_text())
    assert bpe["vocab_size"] == 333
    shown = json.dumps(_exp_show(repo))
    assert "local-e2e" in shown


def _check_evaluation_and_report(repo: Path) -> None:
    """Every model is measured on the test split, the report links only files that exist,
    and the evaluate run is in W&B under the experiment's name."""
    ev = json.loads((repo / "metrics" / "evaluation.json").read_text())
    assert set(ev) == {"tokenizers", "word2vec", "bert", "gpt", "representations"}
    assert ev["gpt"]["test_bpb"] > 0 and ev["gpt"]["test_tokens"] > 0
    assert ev["bert"]["test_tokens"] > 0 and 0 <= ev["bert"]["test_mlm_acc"] <= 1
    assert set(ev["representations"]) == {
        "bow_counts",
        "tfidf",
        "word2vec_avg",
        "bert_mean",
        "gpt_mean",
        "chance",
    }
    shown = json.loads(_sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
    assert "representations" in json.dumps(shown) and "test_bpb" in json.dumps(shown)

    # dvc plots show: the training curves of all three models, on a page that needs no CDN
    _sh("dvc", "plots", "show", "-o", "plots_out", cwd=repo)
    page = (repo / "plots_out" / "index.html").read_text(encoding="utf-8")
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    embedded = set(re.findall(r"vegaEmbed\('#(\w+)'", page))
    assert {
        "metrics_word2vec_train_csv",
        "metrics_word2vec_val_csv",
        "metrics_bert_val_csv",
        "metrics_gpt_val_csv",
    } <= embedded
    assert 'var e="5.20.2"' in page  # the inlined Vega build of .dvc/plots_offline.html

    assets = repo / "report" / "assets"
    for png in ("training_curves", "word2vec_map", "bert_attention", "gpt_attention"):
        assert (assets / f"{png}.png").read_bytes()[:4] == b"\x89PNG", png
    samples = json.loads((assets / "samples.json").read_text())["samples"]
    assert {s["mode"] for s in samples} == {"greedy", "sampled"}
    index = repo / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    refs = re.findall(r"src='([^']+)'", text)
    assert len(refs) == 5 and all((index.parent / r).is_file() for r in refs)
    assert all(s["completion"].strip() for s in samples)  # the model did write something
    assert html.escape(samples[0]["completion"]) in text
    assert json.loads((assets / "skipped.json").read_text()) == {}  # every part evaluated

    runs = [read_offline_run(r) for r in offline_runs(repo / "wandb")]
    evaluate = [r for r in runs if r["job_type"] == "evaluate"]
    assert len(evaluate) == 1 and evaluate[0]["group"] == "smoke-e2e"
    assert evaluate[0]["summary"]["gpt/test_bpb"] == pytest.approx(ev["gpt"]["test_bpb"])
    assert {r["job_type"] for r in runs} >= {"train_gpt", "train_bert", "train_word2vec"}
