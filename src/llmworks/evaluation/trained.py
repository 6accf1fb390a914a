"""The trained artifacts a part of the evaluate stage reads: a family's saved model with its
tokenizer, and trained tokenizers; each missing one is the reason its part is skipped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer
from torch import nn

from llmworks.errors import LlmworksError
from llmworks.models.persistence import WEIGHTS_FILE
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer

if TYPE_CHECKING:
    from llmworks.evaluation.recorder import Recorder


def model_dir(paths: Paths, family: str) -> Path:
    """The trained model directory of ``family``, or the reason there is none."""
    path = paths.model(family)
    if not (path / WEIGHTS_FILE).is_file():
        raise LlmworksError(f"no {path / WEIGHTS_FILE}: the train@{family} stage has not run")
    return path


def is_trained(paths: Paths, family: str) -> bool:
    return (paths.model(family) / WEIGHTS_FILE).is_file()


def load_model(rec: Recorder, model_cls: Any, family: str) -> tuple[nn.Module, Tokenizer]:
    """A family's saved model (``model_cls.load``: on the evaluation device, eval mode) and the
    tokenizer saved beside it."""
    path = model_dir(rec.paths, family)
    model = model_cls.load(path, str(rec.device)).eval()
    return model, read_tokenizer(path / TOKENIZER_FILE)


def load_tokenizer(paths: Paths, name: str) -> Tokenizer:
    path = paths.tokenizer(name)
    if not path.is_file():
        raise LlmworksError(f"no {path}: the tokenizer {name} has not been trained")
    return read_tokenizer(path)
