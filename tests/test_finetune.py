"""The finetune stage as a user runs it (``pipelines/prepare_task.py``, ``pipelines/finetune.py``,
``pipelines/classify.py``) on smoke-sized models: every model and mode scored, a planted
signal found, a pair task, the Hugging Face export equal to our classifier, and a killed
fine-tuning resumed to the same result."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmworks.tracking.sync import offline_runs, read_offline_run

from conftest import OFFLINE_ENV, REPO, SAMPLE_PARAGRAPHS, run_stage, stage_overrides

pytestmark = pytest.mark.slow

SMOKE_TASK = [
    "task.min_words=5", "task.min_paragraphs=6", "task.per_class=10", "task.max_classes=4",
]  # fmt: skip
SMOKE_FINETUNE = [
    "finetune.max_len=32", "finetune.batch_size=8", "finetune.probe.C=[0.1,1.0,10.0]",
    "finetune.optim.warmup_steps=2", "finetune.train.max_epochs=2",
    "finetune.train.log_every_n_steps=1", "finetune.optim.lr=1e-3",
]  # fmt: skip
LABEL_WORDS = {"north": "glacier", "south": "volcano", "east": "harbour"}


@pytest.fixture(scope="module")
def trained(prepared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the prepared corpus, tokenizers and shards, and the three smoke
    models trained by the real stage."""
    root = tmp_path_factory.mktemp("finetune")
    shutil.copytree(prepared_data, root / "data")
    for family in ("word2vec", "bert", "gpt"):
        proc = run_stage("train", *overrides(root, f"family={family}"))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    return stage_overrides(
        None, root, "gpt=smoke", "bert=smoke", "word2vec=smoke", "logger=none",
        *SMOKE_FINETUNE, *extra,
    )  # fmt: skip


def workspace(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained workspace that a test may write into."""
    root = tmp_path / "ws"
    for top in ("data", "models"):
        shutil.copytree(trained / top, root / top, ignore=shutil.ignore_patterns("task"))
    return root


def write_task(folder: Path, pairs: bool = False, seed: int = 0) -> dict[str, str]:
    """CSV files of a three-label task whose label is one planted word in each text."""
    import csv

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", 60), ("validation", 18), ("test", 30)):
        path = folder / f"{split}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["sentence1", "sentence2", "label"] if pairs else ["text", "label"])
            for i in range(n):
                label = list(LABEL_WORDS)[i % 3]
                words = " ".join(rng.sample(SAMPLE_PARAGRAPHS, 2)).split()
                words.insert(rng.randrange(len(words)), LABEL_WORDS[label])
                other = " ".join(rng.sample(SAMPLE_PARAGRAPHS, 1))
                w.writerow([" ".join(words), other, label] if pairs else [" ".join(words), label])
        files[split] = str(path)
    return files


def local_task(files: dict[str, str], pairs: bool = False) -> list[str]:
    spec = ",".join(f"{k}:{v}" for k, v in files.items())
    args = ["task=local", f"task.data_files={{{spec}}}"]
    if pairs:
        args += ["task.text_field=sentence1", "task.text_pair_field=sentence2"]
    return args


def run_ok(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = run_stage(script, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def metrics(root: Path) -> dict:
    return json.loads((root / "metrics" / "finetune.json").read_text())


def test_every_model_and_mode_scores_the_embedded_task(trained: Path, tmp_path: Path) -> None:
    root = workspace(trained, tmp_path)
    run_ok("prepare_task", *overrides(root, *SMOKE_TASK))
    labels = json.loads((root / "data" / "task" / "labels.json").read_text())
    assert len(labels["names"]) >= 2 and labels["pairs"] is False
    wandb = [a for a in overrides(root) if a != "logger=none"] + [
        "logger=wandb", "experiment_name=ft", f"logger.dir={root}",
    ]  # fmt: skip
    proc = run_stage("finetune", *wandb, env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    # Lightning loads after the settings are typed and logging is set up: its lines still
    # print once each, as its own, not again through the "lightning" package's "INFO:"
    # handler or through ours
    lightning_lines = [line for line in proc.stderr.splitlines() if "GPU available:" in line]
    assert lightning_lines and all(line.startswith("GPU available:") for line in lightning_lines)
    got = metrics(root)
    expected = {"bow_counts": ["probe"], "tfidf": ["probe"], "word2vec": ["probe"],
                "bert": ["probe", "finetuned"], "gpt": ["probe", "finetuned"]}  # fmt: skip
    for model, modes in expected.items():
        assert sorted(got[model]) == sorted(modes), model
        for mode in modes:
            for key in ("accuracy", "macro_f1"):
                assert 0.0 <= got[model][mode][key] <= 1.0, (model, mode, key)
    preds = json.loads((root / "metrics" / "finetune_predictions.json").read_text())
    n_test = got["task"]["test_examples"]
    assert len(preds["test_labels"]) == n_test
    assert all(len(p) == n_test for m in preds["models"].values() for p in m.values())
    for family in ("bert", "gpt"):  # classifiers saved with their labels
        saved = root / "models" / "finetuned" / family
        assert json.loads((saved / "labels.json").read_text()) == labels["names"]
    assert (root / "models" / "finetuned" / "bert" / "hf" / "README.md").is_file()
    # one W&B run per model, grouped by experiment, with its final scores
    runs = {r["job_type"]: r for r in map(read_offline_run, offline_runs(root))}
    assert sorted(runs) == sorted(f"finetune@{m}" for m in expected)
    for model, run in runs.items():
        assert run["group"] == "ft" and run["state"] == "finished"
        name = model.split("@")[1]
        assert run["summary"]["final/probe/accuracy"] == pytest.approx(
            got[name]["probe"]["accuracy"]
        )
    # the report's Downstream section reads what the stage wrote
    run_ok("evaluate", *overrides(root, "evaluate.max_test_batches=2"))
    run_ok("report", *overrides(root))
    page = (root / "report" / "index.html").read_text()
    assert "Downstream" in page and "downstream_confusion.png" in page


def test_a_planted_label_word_is_found(trained: Path, tmp_path: Path) -> None:
    root = workspace(trained, tmp_path)
    files = write_task(tmp_path / "task")
    run_ok("prepare_task", *overrides(root, *local_task(files)))
    run_ok("finetune", *overrides(root, "finetune.models=[bow_counts,tfidf,bert,gpt]",
                                  "finetune.modes=[probe]"))  # fmt: skip
    got = metrics(root)
    chance = 1 / 3
    assert got["bow_counts"]["probe"]["accuracy"] >= 0.95
    assert got["tfidf"]["probe"]["accuracy"] >= 0.95
    # the smoke Transformers learned next to nothing, but the planted word's states differ
    for model in ("bert", "gpt"):
        assert got[model]["probe"]["accuracy"] >= 2 * chance, (model, got[model])


def test_a_pair_task_fine_tunes_bert_and_probes_gpt(trained: Path, tmp_path: Path) -> None:
    root = workspace(trained, tmp_path)
    files = write_task(tmp_path / "pairs", pairs=True)
    run_ok("prepare_task", *overrides(root, *local_task(files, pairs=True)))
    proc = run_ok("finetune", *overrides(root, "finetune.train.max_epochs=3"))
    got = metrics(root)
    assert got["task"]["pairs"] is True
    assert set(got["bert"]) == {"probe", "finetuned"}
    assert set(got["gpt"]) == {"probe"}  # picked by default: a GPT reads one text
    assert "gpt fine-tunes no pair task" in proc.stdout + proc.stderr
    # the export reads pairs as our classifier does
    texts = ["Rivers flow to the glacier sea.", "Paris is the volcano capital."]
    pairs = ["The cat sat on the mat.", "Music and mathematics share patterns."]
    _assert_export_matches(root / "models" / "finetuned" / "bert", texts, pairs)

    # named to fine-tune on pairs, a model that reads one text is refused by the preflight,
    # from the task's summary and the model's config, before Lightning loads
    config = root / "models" / "bert" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"type_vocab_size": 1}))
    for model, reason in (("gpt", "gpt reads one text"), ("bert", "type_vocab_size=1")):
        refused = run_stage(
            "finetune", *overrides(root, f"finetune.models=[{model}]"),
            env={"PYTHONPROFILEIMPORTTIME": "1"},
        )  # fmt: skip
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert f"finetune.models has {model}, but task local has text pairs" in refused.stderr
        assert reason in refused.stderr
        assert "lightning" not in re.findall(r"\|\s+([\w.]+)$", refused.stderr, re.M)


def _assert_export_matches(saved: Path, texts: list[str], pairs: list[str] | None) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from llmworks.finetune.classifier import encode_batch, forward, load_classifier

    net, tok, config = load_classifier(saved)
    ours = forward(net, encode_batch(tok, texts, pairs))
    hf = AutoModelForSequenceClassification.from_pretrained(saved / "hf").eval()
    hf_tok = AutoTokenizer.from_pretrained(saved / "hf")
    enc = hf_tok(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        theirs = hf(**enc).logits
    assert enc["input_ids"].tolist() == encode_batch(tok, texts, pairs)["input_ids"].tolist()
    torch.testing.assert_close(theirs, ours.detach(), atol=1e-4, rtol=0)
    assert hf.config.id2label == dict(enumerate(config.labels))


def test_export_and_pipeline_agree_with_the_stage(trained: Path, tmp_path: Path) -> None:
    """Fine-tuned long enough to predict more than one label: pipeline("text-classification")
    gives every test example the label the stage predicted, and so does the classify CLI."""
    from transformers import pipeline

    root = workspace(trained, tmp_path)
    files = write_task(tmp_path / "task")
    run_ok("prepare_task", *overrides(root, *local_task(files)))
    run_ok("finetune", *overrides(root, "finetune.models=[bert]", "finetune.modes=[finetuned]",
                                  "finetune.train.max_epochs=6"))  # fmt: skip
    saved = root / "models" / "finetuned" / "bert"
    preds = json.loads((root / "metrics" / "finetune_predictions.json").read_text())
    ours = preds["models"]["bert"]["finetuned"]
    test = json.loads(json.dumps(_test_texts(root)))
    _assert_export_matches(saved, test[:8], None)
    classify = pipeline("text-classification", model=str(saved / "hf"), device="cpu")
    # the stage reads at most finetune.max_len tokens; the pipeline cuts there when asked
    theirs = [r["label"] for r in classify(test, truncation=True)]
    assert theirs == [preds["labels"][i] for i in ours]
    cli = run_ok("classify", f"model_dir={saved}", f"text={test[0]}", "top_k=1")
    assert cli.stdout.splitlines()[1].split(maxsplit=1)[1] == theirs[0]


def _test_texts(root: Path) -> list[str]:
    import datasets

    return list(datasets.load_from_disk(str(root / "data" / "task" / "dataset"))["test"]["text"])


def test_a_killed_fine_tuning_resumes_to_the_same_result(trained: Path, tmp_path: Path) -> None:
    root = workspace(trained, tmp_path)
    files = write_task(tmp_path / "task")
    run_ok("prepare_task", *overrides(root, *local_task(files)))
    args = ["finetune.models=[bert]", "finetune.modes=[finetuned]", "finetune.train.max_epochs=6"]
    side = [f"paths.{p}={tmp_path / 'side' / p}" for p in ("models", "runs", "metrics")]
    shutil.copytree(root / "models" / "bert", tmp_path / "side" / "models" / "bert")
    run_ok("finetune", *overrides(root, *args), *side)
    expected = json.loads((tmp_path / "side" / "metrics" / "finetune.json").read_text())

    last = root / "runs" / "finetune" / "bert" / "checkpoints" / "last.ckpt"
    cmd = [sys.executable, str(REPO / "pipelines" / "finetune.py"), *overrides(root, *args)]
    proc = subprocess.Popen(cmd, env={**os.environ, **OFFLINE_ENV}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    end = time.monotonic() + 300
    while not last.is_file():
        assert proc.poll() is None, "finished before the kill"
        assert time.monotonic() < end
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "metrics" / "finetune.json").exists()
    rerun = run_ok("finetune", *overrides(root, *args))
    assert "resuming from" in rerun.stdout + rerun.stderr
    got = metrics(root)
    assert got["bert"]["finetuned"]["steps"] == expected["bert"]["finetuned"]["steps"]
    assert got["bert"]["finetuned"]["val_loss"] == pytest.approx(
        expected["bert"]["finetuned"]["val_loss"], abs=1e-5
    )
    assert got["bert"]["finetuned"]["accuracy"] == expected["bert"]["finetuned"]["accuracy"]


def test_a_corpus_without_the_default_task_skips_it_with_the_reason(
    trained: Path, tmp_path: Path
) -> None:
    """Your own short documents cannot make the embedded task: the pipeline goes on, and
    the metrics and the report say why, instead of failing dvc repro at its end."""
    root = workspace(trained, tmp_path)
    proc = run_ok("prepare_task", *overrides(root, "task.min_paragraphs=100000"))
    assert "no task" in proc.stdout + proc.stderr
    run_ok("finetune", *overrides(root))
    reason = metrics(root)["skipped"]
    assert "100000 paragraphs" in reason
    run_ok("evaluate", *overrides(root, "evaluate.max_test_batches=2"))
    skipped = json.loads((root / "report" / "assets" / "skipped.json").read_text())
    assert reason in skipped["downstream"]
