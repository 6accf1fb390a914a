"""Text from a causal LM, streamed to the terminal: ``pipelines/generate.py`` and the
``llmworks-generate`` console script. The model is ours (a trained model directory or a
Lightning checkpoint of train@gpt) or any supported Hugging Face causal LM (a hub id or a
directory: Llama, Mistral, Qwen2/3, Phi-3, GPT-2, Mixtral), imported into our ``GPT`` and
decoded with its KV cache::

    python pipelines/generate.py prompt="The history of" temperature=0
    python pipelines/generate.py prompt="The" checkpoint=runs/gpt/checkpoints/best.ckpt
    python pipelines/generate.py checkpoint=microsoft/Phi-3-mini-4k-instruct chat=true \\
        prompt="Can you provide ways to eat combinations of bananas and dragonfruits?"
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.families.gpt.hf import from_hf
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.generation import EOT, stream
from llmworks.models.hub import is_hf_checkpoint, looks_like_hub_id
from llmworks.models.persistence import CONFIG_FILE, WEIGHTS_FILE
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_gpt(path: str | Path, map_location: str = "cpu") -> GPT:
    """A GPT from a saved model directory (``model.safetensors`` + ``config.json``) or from a
    Lightning checkpoint (``.ckpt``) of the train@gpt stage."""
    path = Path(path)
    if path.is_dir() and (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return GPT.load(path, map_location)
    if path.is_file() and path.suffix == ".ckpt":
        # data only (weights_only): the model's config and weights from the checkpoint
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        model = GPT(GPTConfig(**ckpt["hyper_parameters"]["model"]))
        prefix = "model."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        model.load_state_dict(state)
        return model.eval()
    raise LlmworksError(
        f"{path}: not a model directory with {WEIGHTS_FILE} nor a .ckpt file; "
        "train one (dvc repro train@gpt) or give checkpoint=<model dir, .ckpt or hub id>"
    )


def find_tokenizer(cfg: DictConfig, model_path: Path) -> Path:
    """The tokenizer saved next to the model, else ``<paths.data>/tokenizers/<gpt.tokenizer>``."""
    for candidate in (
        model_path / TOKENIZER_FILE,
        Paths.from_config(cfg).tokenizer(str(cfg.gpt.tokenizer)),
    ):
        if candidate.is_file():
            return candidate
    raise LlmworksError(
        f"no tokenizer.json next to {model_path} nor under {cfg.paths.data}/tokenizers"
    )


@dataclass
class Codec:
    """Text to ids and back for one model, and the ids that end its turn."""

    encode: Any  # str -> list[int]
    decode: Any  # list[int] -> str
    stops: list[int]
    chat: Any | None = None  # str -> list[int], the model's chat template applied


def our_codec(tokenizer_json: Path) -> Codec:

    tok = read_tokenizer(tokenizer_json)
    eot = tok.token_to_id(EOT)
    return Codec(
        encode=lambda text: tok.encode(text).ids or ([eot] if eot is not None else []),
        decode=tok.decode,
        stops=[eot] if eot is not None else [],
    )


def hf_codec(path: Path) -> Codec:
    """A Hugging Face checkpoint's own tokenizer (``AutoTokenizer``: its special tokens, BOS,
    chat template) and its end-of-turn ids (``generation_config.json`` and the tokenizer's)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    stops: list[int] = []
    gen = path / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        stops += eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tok.eos_token_id is not None:
        stops.append(tok.eos_token_id)
    chat = None
    if tok.chat_template:

        def chat(prompt: str) -> list[int]:
            messages = [{"role": "user", "content": prompt}]
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding

    return Codec(
        encode=lambda text: tok(text).input_ids,
        decode=lambda ids: tok.decode(ids, skip_special_tokens=True),
        stops=list(dict.fromkeys(stops)),
        chat=chat,
    )


def load(cfg: DictConfig) -> tuple[GPT, Codec]:
    """The model ``checkpoint`` names (ours by default) and how to encode text for it."""
    source = cfg.checkpoint or Paths.from_config(cfg).model("gpt")
    path = Path(str(source)).expanduser()
    dtype = DTYPES[str(cfg.dtype)]
    if not (is_hf_checkpoint(path) or looks_like_hub_id(str(source))):  # ours
        return load_gpt(path).to(dtype), our_codec(find_tokenizer(cfg, path))
    model, files = from_hf(str(source), dtype=dtype, where="checkpoint")
    return model, hf_codec(files)


def check_sampling(cfg: DictConfig) -> None:
    """The sampling settings in their domains, as transformers' ``generate`` defines them
    (``top_k=0`` is off, ``top_p`` in [0, 1] where 0 keeps the top token), before any model
    is loaded."""
    if str(cfg.dtype) not in DTYPES:
        raise LlmworksError(f"dtype={cfg.dtype!r}: expected one of {sorted(DTYPES)}")
    checks = [
        ("max_new_tokens", cfg.max_new_tokens, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
        ("temperature", cfg.temperature, lambda v: v >= 0, ">= 0 (0 is greedy)"),
        ("top_k", cfg.top_k, lambda v: v is None or isinstance(v, int) and v >= 0, "an integer >= 0 (0 or null: off)"),
        ("top_p", cfg.top_p, lambda v: v is None or 0 <= v <= 1, "in [0, 1] (1 or null: off)"),
        ("repetition_penalty", cfg.repetition_penalty, lambda v: v > 0, "> 0 (1 is off)"),
        ("no_repeat_ngram_size", cfg.no_repeat_ngram_size, lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0 is off)"),
    ]  # fmt: skip
    for name, value, ok, domain in checks:
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise LlmworksError(f"{name}={value}: must be {domain}")


def generate_text(cfg: DictConfig, out: TextIO = sys.stdout) -> str:
    """Continue ``cfg.prompt`` (or answer it, ``chat=true``) and stream the new text to
    ``out``; returns prompt + new text."""
    check_sampling(cfg)
    model, codec = load(cfg)
    if cfg.chat and codec.chat is None:
        raise LlmworksError("chat=true, but this model's tokenizer has no chat template")
    ids = codec.chat(str(cfg.prompt)) if cfg.chat else codec.encode(str(cfg.prompt))
    context = int(model.config.block_size)
    if len(ids) > context:
        log.warning(
            "the prompt is %d tokens, longer than the model's context of %d: kept its last %d "
            "(%d dropped from the start)", len(ids), context, context, len(ids) - context,
        )  # fmt: skip
    stops = codec.stops if cfg.stop_at_eot else []
    generator = torch.Generator().manual_seed(int(cfg.seed))
    new: list[int] = []
    shown = ""
    out.write(str(cfg.prompt) + ("\n" if cfg.chat else ""))
    for nxt in stream(
        model,
        torch.tensor([ids]),
        int(cfg.max_new_tokens),
        temperature=float(cfg.temperature),
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        stop_token=stops or None,
        use_cache=bool(cfg.use_cache),
        generator=generator,
        repetition_penalty=float(cfg.repetition_penalty),
        no_repeat_ngram_size=int(cfg.no_repeat_ngram_size),
    ):
        if int(nxt) in stops:
            break
        new.append(int(nxt))
        # decode everything so far: a byte-level token may end in the middle of a character
        text = codec.decode(new)
        if not text.endswith("\ufffd"):
            out.write(text[len(shown) :])
            out.flush()
            shown = text
    text = codec.decode(new)
    out.write(text[len(shown) :] + "\n")  # what a cut-off character held back, if anything
    return str(cfg.prompt) + text


def main() -> None:
    """Console script ``llmworks-generate prompt="..."``: the same app as pipelines/generate.py."""
    import hydra

    from llmworks.cli import run_stage
    from llmworks.config import CONF_DIR

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="generate")
    def app(cfg: DictConfig) -> None:
        run_stage(generate_text, cfg)

    app()
