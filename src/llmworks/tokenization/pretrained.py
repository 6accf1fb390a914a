"""A published tokenizer as a tokenizer option (``type: pretrained``): fetched instead of
trained, then measured, encoded and shown as ours are. Its ``tokenizer.json`` comes from a
Hugging Face hub id or a directory (``llmworks.models.hub.resolve``: offline, from the
cache); a tokenizer without one (a slow, SentencePiece-only tokenizer) is refused."""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from llmworks.errors import LlmworksError
from llmworks.models.hub import resolve
from llmworks.tokenization.files import read_tokenizer

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


@dataclass(frozen=True)
class PretrainedSpec:
    """``conf/tokenizer/pretrained.yaml``."""

    type: str  # pretrained
    name: str | None  # a hub id or a directory holding tokenizer.json
    eot_token: str  # ends every document in the shards

    def __post_init__(self) -> None:
        if not self.name:
            raise LlmworksError(
                "a pretrained tokenizer needs its name: tokenizers.<name>.name=<hub id or dir>"
            )


def fetch(spec: PretrainedSpec, where: str) -> Tokenizer:
    """The published tokenizer, checked to hold the end-of-text token the shards use."""
    path = resolve(spec.name, f"{where}.name", files=TOKENIZER_FILES)
    if not (path / "tokenizer.json").is_file():
        raise LlmworksError(
            f"{where}.name={spec.name}: no tokenizer.json in {path} (only fast tokenizers are "
            "supported; convert a SentencePiece model with transformers' AutoTokenizer)"
        )
    tok = read_tokenizer(path / "tokenizer.json")
    if tok.token_to_id(spec.eot_token) is None:
        special = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
        raise LlmworksError(
            f"{where}.eot_token={spec.eot_token!r} is not a token of {spec.name}; "
            f"its special tokens: {special[:12]}"
        )
    return tok


def unk_token(tok: Tokenizer) -> str | None:
    """The token a published tokenizer writes for what it cannot encode (None: byte-level,
    it can encode everything)."""
    return getattr(tok.model, "unk_token", None)
