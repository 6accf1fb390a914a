"""What a stage pays before its work: the stages that need no tensors (corpus, tokenizers,
encode, task, report) never import torch, which costs each of them ~1.5 s of start-up on
every run of the pipeline; and ``threads`` caps torch's threads whether torch was imported
before the cap or after it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

TEXT_ONLY = ["prepare_corpus", "train_tokenizer", "encode", "prepare_task", "report"]


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
