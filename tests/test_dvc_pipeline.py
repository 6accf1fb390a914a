"""The pipeline through DVC, in a throwaway copy of the repository: `dvc exp run -S ...`
composes conf/ into params.yaml and the stages use the overridden values; `dvc repro` uses
params.yaml as it is; stage params isolate the stages from each other's knobs."""

from __future__ import annotations

import html
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from llmworks.tracking.sync import offline_runs, read_offline_run

from conftest import copy_repo, sh, train_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo") / "llmworks")


def _exp_show(repo: Path) -> list[dict]:
    return json.loads(sh("dvc", "exp", "show", "--json", cwd=repo).stdout)


# secrets a user may have in the environment: none may end up in anything the pipeline writes
SECRETS = {
    "WANDB_API_KEY": "wandbsecret" + "7" * 29,
    "HF_TOKEN": "hf_secretTokenValue123456789",
    "AWS_SECRET_ACCESS_KEY": "awsSecretKeyValue/abcdefghijklmnop",
    "GITHUB_TOKEN": "ghp_secretGithubTokenValue0123456789",
}


def test_smoke_experiment_runs_end_to_end(repo: Path) -> None:
    sh("dvc", "exp", "run", "-n", "smoke-e2e", "-S", "experiment=smoke", cwd=repo, env=SECRETS)
    stats = json.loads((repo / "data" / "corpus" / "corpus_stats.json").read_text())
    assert stats["total"]["documents"] == 24  # experiment=smoke's corpus.max_documents
    for name in ("bpe", "wordpiece", "unigram"):
        tok_stats = json.loads((repo / f"data/tokenizers/{name}/tokenizer_stats.json").read_text())
        assert tok_stats["vocab_size"] <= 600
        meta = json.loads((repo / f"data/tokens/{name}/meta.json").read_text())
        assert meta["splits"]["train"]["tokens"] > 1000
    gpt, bert, w2v = (train_metrics(repo, f) for f in ("gpt", "bert", "word2vec"))
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
    status = json.loads(sh("dvc", "status", "--json", cwd=repo).stdout)
    assert status == {}
    repro = sh("dvc", "repro", cwd=repo)
    assert "didn't change, skipping" in repro.stdout

    # A knob of one tokenizer invalidates that tokenizer alone (its shards follow from it).
    params = (repo / "params.yaml").read_text()
    changed_params = yaml.safe_load(params)
    changed_params["tokenizers"]["unigram"]["vocab_size"] = 601
    (repo / "params.yaml").write_text(yaml.safe_dump(changed_params, sort_keys=False))
    changed = set(json.loads(sh("dvc", "status", "--json", cwd=repo).stdout))
    # (evaluate reads every tokenizer's settings too)
    assert changed == {"train_tokenizer@unigram", "evaluate"}
    # The shard readers' settings retrain what reads shards, not Word2Vec (it reads the
    # corpus); nor do they re-encode (the encode stage reads only `data.backend` and
    # `data.chunk_tokens` of them).
    changed_params = yaml.safe_load(params)
    changed_params["data"]["cache_dir"] = "/tmp/elsewhere"
    (repo / "params.yaml").write_text(yaml.safe_dump(changed_params, sort_keys=False))
    changed = set(json.loads(sh("dvc", "status", "--json", cwd=repo).stdout))
    assert changed == {"train@bert", "train@gpt"}
    (repo / "params.yaml").write_text(params)


def test_wandb_lineage_follows_the_pipeline_and_carries_the_dvc_hashes(repo: Path) -> None:
    """Each stage of the smoke experiment logged what it produced and recorded what it read
    (offline: in its config) as W&B artifacts; the digests chain the runs together, and the
    artifacts carry the hashes dvc.lock records for the same outputs."""
    from llmworks.tracking.sync import lineage, read_run

    runs = [read_run(p) for p in offline_runs(repo / "wandb")]
    runs = [r for r in runs if r.group == "smoke-e2e"]
    edges = {(a.split("/")[1], name, b.split("/")[1]) for a, name, b in lineage(runs)}
    for edge in [
        ("corpus", "corpus", "train_tokenizer@bpe"),
        ("train_tokenizer@bpe", "tokenizer-bpe", "encode@bpe"),
        ("corpus", "corpus", "encode@bpe"),
        ("encode@bpe", "tokens-bpe", "train@gpt"),
        ("encode@wordpiece", "tokens-wordpiece", "train@bert"),
        ("corpus", "corpus", "train@word2vec"),
        ("train@gpt", "model-gpt", "evaluate"),
        ("train@bert", "model-bert", "evaluate"),
        ("train@word2vec", "model-word2vec", "evaluate"),
    ]:
        assert edge in edges, edge
    assert not [e for e in edges if e[0] == "?"]  # every input was produced by a stage here
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    logged = {name: art for r in runs for name, art in r.logged.items()}
    for name, stage, out in (
        ("corpus", "corpus", "data/corpus/dataset"),
        ("tokenizer-bpe", "train_tokenizer@bpe", "data/tokenizers/bpe/tokenizer.json"),
        ("tokens-wordpiece", "encode@wordpiece", "data/tokens/wordpiece"),
    ):
        md5 = next(o["md5"] for o in lock[stage]["outs"] if o["path"] == out)
        assert logged[name]["metadata"]["dvc_md5"] == md5, name
    assert logged["model-gpt"]["type"] == "model"
    assert Path(logged["model-gpt"]["metadata"]["path"]).name == "hf"  # from_pretrained-able
    dry = sh("llmworks-sync", "wandb", "--dry-run", cwd=repo).stdout
    assert "smoke-e2e/train@gpt -> model-gpt -> smoke-e2e/evaluate" in dry


def test_a_run_is_shared_through_a_dvc_remote(repo: Path, tmp_path: Path) -> None:
    """Clone A (the smoke experiment) pushes to a local-directory remote; clone B pulls:
    every output is back, DVC sees nothing changed and reproduces nothing. Checkpoints and
    W&B runs are not shared: they are not DVC outputs (runs/, wandb/). Then clone B runs
    the whole pipeline again from nothing and gets clone A's metrics."""
    sh("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "-c", "user.email=ci@llmworks", "-c", "user.name=ci", "commit", "-qm", "smoke",
       cwd=repo)  # fmt: skip
    # a remote that does not exist: DVC's one line, and the workspace's outputs stay
    model = (repo / "models/gpt/hf/model.safetensors").read_bytes()
    wrong = subprocess.run(
        ["dvc", "push", "-r", "nosuch"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode != 0 and "remote 'nosuch' doesn't exist" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert (repo / "models/gpt/hf/model.safetensors").read_bytes() == model
    sh("dvc", "push", cwd=repo)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    sh("dvc", "pull", cwd=clone)
    for path in ("models/gpt/hf/model.safetensors", "models/bert/model.safetensors",
                 "models/word2vec/vectors.bin", "data/tokens/bpe/train.bin",
                 "report/assets/gpt_attention.png", "metrics/evaluation.json"):  # fmt: skip
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    assert json.loads(sh("dvc", "status", "--json", cwd=clone).stdout) == {}
    assert "Data and pipelines are up to date" in sh("dvc", "repro", cwd=clone).stdout
    assert not (clone / "runs").exists()
    # reproducible: every stage run again in the clone from nothing (another process,
    # another hash seed, no run cache, no checkpoint) gives the same files and the same
    # metrics, timings aside
    sh("dvc", "repro", "-f", "--no-run-cache", cwd=clone)
    assert _metrics_without_timings(clone) == _metrics_without_timings(repo)
    for name in ("wordpiece", "bpe", "unigram"):
        for path in (f"data/tokenizers/{name}/tokenizer.json", f"data/tokens/{name}/train.bin"):
            assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    # the cache holds outputs, not optimizer state: no checkpoint was pushed
    assert not [p for p in (tmp_path / "remote").rglob("*") if p.suffix == ".ckpt"]


TIMINGS = {"tokens_per_s", "train_seconds"}


def _metrics_without_timings(repo: Path) -> dict:
    """``dvc metrics show`` of the workspace, without the values that time something."""

    def strip(node: object) -> object:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in TIMINGS}
        return node

    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
    metrics = shown[""]["data"]  # "": the workspace
    assert len(metrics) >= 5, list(metrics)
    return {path: strip(entry["data"]) for path, entry in metrics.items()}


def test_local_corpus_and_vocab_overrides_reach_the_stages(repo: Path, text_corpus: Path) -> None:
    """``dvc exp run`` of one target runs it and the stages it reads (here the corpus, the
    BPE tokenizer and its shards) with the overrides; the models are the smoke run's job."""
    sh(
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
        "encode@bpe",
        cwd=repo,
    )
    stats = json.loads((repo / "data" / "corpus" / "corpus_stats.json").read_text())
    # experiment=smoke caps the corpus at 24 documents; the command-line values win over it.
    assert stats["source"]["name"] == "local" and stats["total"]["documents"] == 24
    bpe = json.loads((repo / "data/tokenizers/bpe/tokenizer_stats.json").read_text())
    assert bpe["vocab_size"] == 333
    meta = json.loads((repo / "data/tokens/bpe/meta.json").read_text())
    assert meta["vocab_size"] == 333 and meta["splits"]["train"]["tokens"] > 0
    shown = json.dumps(_exp_show(repo))
    assert "local-e2e" in shown


def test_no_secret_from_the_environment_is_in_any_file_the_pipeline_wrote(repo: Path) -> None:
    """After the smoke experiment ran with fake secrets in its environment: params, logs,
    W&B runs and config, the DVC lock, metrics, checkpoints, models and their exports."""
    written = [
        p
        for top in (
            "data",
            "models",
            "runs",
            "metrics",
            "report",
            "wandb",
            "dvc.lock",
            "params.yaml",
        )
        for p in ([repo / top] if (repo / top).is_file() else sorted((repo / top).rglob("*")))
        if p.is_file()
    ]
    assert len(written) > 50 and any(p.suffix == ".wandb" for p in written)
    for path in written:
        data = path.read_bytes()
        for name, secret in SECRETS.items():
            assert secret.encode() not in data, f"{name} found in {path.relative_to(repo)}"


def _check_evaluation_and_report(repo: Path) -> None:
    """Every model is measured on the test split, the report links only files that exist,
    and the evaluate run is in W&B under the experiment's name."""
    ev = json.loads((repo / "metrics" / "evaluation.json").read_text())
    assert set(ev) == {"tokenizers", "word2vec", "bert", "gpt", "representations"}
    assert ev["gpt"]["test_bpb"] > 0 and ev["gpt"]["test_tokens"] > 0
    # word-level perplexity: the test loss per word of the test split (+1 per document)
    test = json.loads((repo / "data/tokens/bpe/meta.json").read_text())["splits"]["test"]
    per_word = ev["gpt"]["test_loss"] * test["tokens"] / (test["words"] + test["docs"])
    assert ev["gpt"]["test_word_ppl"] == pytest.approx(math.exp(per_word), rel=1e-6)
    assert ev["bert"]["test_tokens"] > 0 and 0 <= ev["bert"]["test_mlm_acc"] <= 1
    assert set(ev["representations"]) == {
        "bow_counts",
        "tfidf",
        "word2vec_avg",
        "bert_mean",
        "gpt_mean",
        "chance",
    }
    shown = json.loads(sh("dvc", "metrics", "show", "--json", cwd=repo).stdout)
    assert "representations" in json.dumps(shown) and "test_bpb" in json.dumps(shown)

    # dvc plots show: the training curves of all three models, on a page that needs no CDN
    sh("dvc", "plots", "show", "-o", "plots_out", cwd=repo)
    page = (repo / "plots_out" / "index.html").read_text(encoding="utf-8")
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    embedded = set(re.findall(r"vegaEmbed\('#(\w+)'", page))
    assert {
        "metrics_train_word2vec_train_csv",
        "metrics_train_word2vec_val_csv",
        "metrics_train_bert_val_csv",
        "metrics_train_gpt_val_csv",
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
    assert len(refs) == 7 and all((index.parent / r).is_file() for r in refs)
    assert "assets/downstream_confusion.png" in refs
    ft = json.loads((repo / "metrics" / "finetune.json").read_text())
    assert {m: sorted(r) for m, r in ft.items() if m != "task"} == {
        "bow_counts": ["probe"], "tfidf": ["probe"], "word2vec": ["probe"],
        "bert": ["finetuned", "probe"], "gpt": ["finetuned", "probe"],
    }  # fmt: skip
    assert all(s["completion"].strip() for s in samples)  # the model did write something
    assert html.escape(samples[0]["completion"]) in text
    assert json.loads((assets / "skipped.json").read_text()) == {}  # every part evaluated

    runs = [read_offline_run(r) for r in offline_runs(repo / "wandb")]
    evaluate = [r for r in runs if r["job_type"] == "evaluate"]
    assert len(evaluate) == 1 and evaluate[0]["group"] == "smoke-e2e"
    assert evaluate[0]["summary"]["gpt/test_bpb"] == pytest.approx(ev["gpt"]["test_bpb"])
    assert {r["job_type"] for r in runs} >= {"train@gpt", "train@bert", "train@word2vec",
                                             "finetune@bert", "finetune@tfidf"}  # fmt: skip
