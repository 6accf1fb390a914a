"""What a stage pays before its work: the stages that need no tensors (corpus, tokenizers,
encode, task, report) never import torch, which costs each of them ~1.5 s of start-up on
every run of the pipeline; the others import it only once Hydra has accepted the config, so
a mistyped override fails in ~1.5 s, not after torch and Lightning load (~7 s); the training
and finetune stages type their sections before Lightning loads, so a bad value fails in
~2.5 s; and ``threads`` caps torch's threads whether torch was imported before the cap or
after it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

TEXT_ONLY = ["prepare_corpus", "train_tokenizer", "encode", "prepare_task", "report"]
WITH_TENSORS = ["train", "finetune", "evaluate", "generate", "fill_mask", "classify"]


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


@pytest.mark.parametrize("entry", TEXT_ONLY)
def test_a_stage_that_needs_no_tensors_starts_without_torch(entry: str) -> None:
    loaded = _python(
        f"import runpy, sys; runpy.run_path('pipelines/{entry}.py', run_name='check'); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])"
    )
    assert loaded == "[]"


@pytest.mark.parametrize("entry", WITH_TENSORS)
def test_a_stage_with_tensors_imports_torch_only_after_hydra_accepts_the_config(entry: str) -> None:
    mistyped = subprocess.run(
        [sys.executable, "-X", "importtime", f"pipelines/{entry}.py", "no_such_key=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert mistyped.returncode != 0 and "no_such_key" in mistyped.stderr
    imported = re.findall(r"\|\s+([\w.]+)$", mistyped.stderr, re.M)  # -X importtime's lines
    assert "hydra" in imported and "torch" not in imported and "lightning" not in imported


# (stage, overrides..., the message); a training case without family= trains gpt
BAD_VALUES = [
    ("train", "gpt.optim.lr=-1", "gpt.optim: lr=-1: must be > 0"),
    ("train", "gpt.model.mlp=mid", "gpt.model:"),
    ("train", "gpt.data.batch_size=abc", "gpt.data: batch_size='abc': expected a number"),
    ("train", "family=bert", "bert.data.mask_rate=1.5", "bert.data: mask_rate=1.5"),
    ("train", "family=bert", "bert.data.max_seq_len=1000", "exceeds the model's position table"),
    ("train", "family=word2vec", "word2vec.model.dim=0", "word2vec.model: dim=0: must be >= 1"),
    ("train", "data.backend=nope", "data: backend='nope'"),
    ("train", "family=nope", "family='nope': expected one of"),
    ("train", "families.gpt.data_section=dta", "families.gpt.data_section='dta': expected 'data'"),
    ("train", "families.gpt.data_section=gpt", "data_section='gpt': expected 'data', the section"),
    ("train", "family=word2vec", "families.word2vec.data_section=data", "only its own section"),
    # the Trainer's arguments and hardware (lightning.Trainer's names read from its source)
    ("train", "+trainer.max_stepz=5", "trainer.max_stepz: lightning.Trainer takes no argument"),
    ("train", "+gpt.train.max_epoch=2", "did you mean gpt.train.max_epochs?"),
    ("train", "+trainer.max_steps=3", "['max_steps'] set both in trainer and in the model's"),
    ("train", "trainer.devices=4096", "trainer.devices=4096 CPU processes, but this machine has"),
    ("train", "trainer=gpu", "trainer.accelerator=gpu, but torch"),
    ("train", "trainer.num_nodes=2", "needs one process per node started by a launcher"),
    ("train", "trainer.num_nodes=abc", "trainer.num_nodes='abc': expected a whole number >= 1"),
    ("train", "trainer.devices=0", "trainer.devices=0: expected a count >= 1, -1"),
    ("finetune", "+finetune.train.max_stepz=5", "finetune.train.max_stepz: lightning.Trainer"),
    # the files it trains from, after the config (these runs' paths.data is empty)
    ("train", "family=bert", "wordpiece/tokenizer.json not found; train it first"),
    ("train", "family=word2vec", "does not exist; run the corpus stage first"),
    ("train", "family=bert", "data.backend=litdata", "bert.data.packing=windows", "packs the"),
    ("finetune", "finetune.gpt.pooling=max", "finetune.gpt.pooling='max': expected one of"),
    ("finetune", "finetune.models=[tfidf,bret]", "finetune.models: ['bret'] unknown"),
    ("finetune", "finetune.modes=[probes]", "finetune: modes=['probes']: expected"),
    ("finetune", "finetune.optim.lr=-1", "finetune.optim: lr=-1: must be > 0"),
    ("finetune", "finetune.probe.C=[]", "finetune.probe: C=[]: expected a non-empty list"),
]
# what a stage loads only once its settings are typed
STAGE_MODULE = {"train": "llmworks.training.recipe", "finetune": "llmworks.finetune.stage"}


@pytest.mark.parametrize("case", BAD_VALUES, ids=lambda case: f"{case[0]}:{case[-2]}")
def test_a_bad_training_or_finetuning_value_fails_before_lightning_loads(
    case: tuple[str, ...], tmp_path
) -> None:
    from conftest import stage_overrides

    stage, *overrides, message = case
    if stage == "train" and not any(o.startswith("family=") for o in overrides):
        overrides.insert(0, "family=gpt")
    bad = subprocess.run(
        [sys.executable, "-X", "importtime", f"pipelines/{stage}.py", "logger=none",
         *stage_overrides(None, tmp_path), *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and message in bad.stderr, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
    imported = re.findall(r"\|\s+([\w.]+)$", bad.stderr, re.M)
    assert "lightning" not in imported and STAGE_MODULE[stage] not in imported


def test_threads_cap_torch_imported_before_or_after() -> None:
    out = _python(
        "import os; os.environ.pop('OMP_NUM_THREADS', None)\n"
        "from llmworks.cli import set_threads\n"
        "set_threads(1)\n"
        "import torch\n"
        "after = torch.get_num_threads()\n"
        "torch.set_num_threads(2)\n"
        "set_threads(1)\n"
        "print(after, torch.get_num_threads())"
    )
    assert out == "1 1"
