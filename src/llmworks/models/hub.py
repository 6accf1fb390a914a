"""Where a Hugging Face checkpoint's files are: a hub id or a directory, resolved to files on
disk (offline first), and its ``transformers`` config. Nothing here imports torch, so the
stages that only need a published tokenizer (train_tokenizer, encode) start without it.

- ``resolve(source)``: a local directory as it is; a hub id from the Hugging Face cache, or
  downloaded once when the hub is reachable; offline and not cached, one line that says how
  to fetch it (``hf download <id>``).
- ``read_config(path)``: the ``transformers`` config, for a standard architecture only
  (``trust_remote_code`` is never set: a checkpoint is data, never code).

Reading the weights into a model is ``llmworks.models.checkpoints``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from llmworks.errors import LlmworksError
from llmworks.tokenization.files import read_tokenizer

CONFIG = "config.json"
# what a model needs from a hub repository (no optimizer states, no other formats)
HUB_FILES = [
    "*.json",
    "*.safetensors",
    "tokenizer*",
    "special_tokens_map.json",
    "generation_config.json",
]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def hub_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE") or ""
    return flag.upper() in {"1", "ON", "YES", "TRUE"}


def looks_like_hub_id(source: str | Path) -> bool:
    """``owner/name`` that is no existing path: what ``resolve`` looks up on the hub."""
    text = str(source)
    return bool(_HUB_ID.fullmatch(text)) and "/" in text and not Path(text).expanduser().exists()


def resolve(source: str | Path, what: str = "checkpoint", files: list[str] | None = None) -> Path:
    """The directory holding ``source``'s files: a local directory, or a hub id's snapshot
    in the Hugging Face cache (``files`` of it -- a model's by default -- downloaded once if
    the hub is reachable)."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _HUB_ID.fullmatch(str(source)):
        raise LlmworksError(f"{what} {source}: not a directory, nor a Hugging Face hub id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    fetch = f"`hf download {source}` (or run once with the network)"
    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except LocalEntryNotFoundError:
        if hub_offline():
            raise LlmworksError(
                f"{what} {source} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: "
                f"fetch it once with {fetch}"
            ) from None
    try:
        got = Path(snapshot_download(str(source), allow_patterns=files or HUB_FILES))
        if files is None and not any(got.glob("*.safetensors")):  # an old repository
            got = Path(snapshot_download(str(source), allow_patterns=["pytorch_model*"]))
        return got
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise LlmworksError(
            f"{what} {source}: not in the Hugging Face cache and not downloadable ({reason}); "
            f"fetch it with {fetch}"
        ) from exc


def is_hf_checkpoint(path: Path) -> bool:
    """A Hugging Face model directory (its config names a ``model_type``), not one of ours
    (whose ``config.json`` is the model's own config dataclass)."""
    config = path / CONFIG
    return path.is_dir() and config.is_file() and "model_type" in json.loads(config.read_text())


def read_config(path: Path) -> Any:
    """The checkpoint's ``transformers`` config (its ``model_type`` picks the class)."""
    if not (path / CONFIG).is_file():
        raise LlmworksError(f"{path}: no {CONFIG}; not a Hugging Face model directory")
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LlmworksError(f"{path / CONFIG}: {first}") from exc


def check_tokenizer(
    base: Path, tokenizer_json: Path, model_vocab: int, where: str, name: str
) -> None:
    """Refuse, before any training, a tokenizer that is not the checkpoint's: the shards
    were encoded with ``tokenizer_json`` (``tokenizers.<name>``), and the checkpoint's
    embedding rows mean its own tokenizer's ids. The vocabularies must be equal (the model
    may have more rows than the tokenizer has tokens: many are padded to a round size)."""
    ours = read_tokenizer(tokenizer_json)
    fix = f"encode with its tokenizer: tokenizers.{name}=pretrained tokenizers.{name}.name={where.split('=', 1)[-1]}"
    if ours.get_vocab_size() > model_vocab:
        raise LlmworksError(
            f"{where}: the model has {model_vocab} embedding rows, but tokenizer {name} "
            f"({tokenizer_json}) has {ours.get_vocab_size()} tokens; {fix}"
        )
    theirs = base / "tokenizer.json"
    if theirs.is_file() and read_tokenizer(theirs).get_vocab() != ours.get_vocab():
        raise LlmworksError(
            f"{where}: tokenizer {name} ({tokenizer_json}) is not the checkpoint's "
            f"({theirs}): its ids would mean other tokens; {fix}"
        )


def check_base_tokenizer(source: str, where: str, tokenizer_json: Path, name: str) -> None:
    """``check_tokenizer`` for the checkpoint ``source`` before its weights load: its
    ``config.json`` names its embedding rows (``vocab_size``), which is what the training
    stage's preflight needs to refuse another tokenizer's shards before Lightning loads. A
    config that nests them (``text_config``) is left to the check after loading."""
    base = resolve(source, where)
    config = base / CONFIG
    rows = json.loads(config.read_text()).get("vocab_size") if config.is_file() else None
    if isinstance(rows, int) and not isinstance(rows, bool):
        check_tokenizer(base, tokenizer_json, rows, where, name)
