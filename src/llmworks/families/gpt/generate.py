"""Text from a trained GPT, streamed to the terminal: ``pipelines/generate.py`` and the
``llmworks-generate`` console script::

    python pipelines/generate.py prompt="The history of" temperature=0
    python pipelines/generate.py prompt="The" checkpoint=runs/gpt/checkpoints/best.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.families.gpt.model import GPT, GPTConfig
from llmworks.generation import EOT, stream
from llmworks.models.persistence import CONFIG_FILE, WEIGHTS_FILE
from llmworks.paths import TOKENIZER_FILE, Paths


def load_gpt(path: str | Path, map_location: str = "cpu") -> GPT:
    """A GPT from a saved model directory (``model.safetensors`` + ``config.json``) or from a
    Lightning checkpoint (``.ckpt``) of the train_gpt stage."""
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
        "train one (dvc repro train@gpt) or give checkpoint=<model dir or .ckpt>"
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


def generate_text(cfg: DictConfig, out: TextIO = sys.stdout) -> str:
    """Continue ``cfg.prompt`` and stream the new text to ``out``; returns prompt + new text."""
    from tokenizers import Tokenizer

    model_path = Path(cfg.checkpoint or Paths.from_config(cfg).model("gpt"))
    model = load_gpt(model_path)
    tok = Tokenizer.from_file(str(find_tokenizer(cfg, model_path)))
    ids = tok.encode(str(cfg.prompt)).ids or [tok.token_to_id(EOT)]
    stop = tok.token_to_id(EOT) if cfg.stop_at_eot else None
    generator = torch.Generator().manual_seed(int(cfg.seed))
    new: list[int] = []
    shown = ""
    out.write(str(cfg.prompt))
    for nxt in stream(
        model,
        torch.tensor([ids]),
        int(cfg.max_new_tokens),
        temperature=float(cfg.temperature),
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        stop_token=stop,
        generator=generator,
        repetition_penalty=float(cfg.repetition_penalty),
        no_repeat_ngram_size=int(cfg.no_repeat_ngram_size),
    ):
        if stop is not None and int(nxt) == stop:
            break
        new.append(int(nxt))
        # decode everything so far: a byte-level token may end in the middle of a character
        text = tok.decode(new)
        if not text.endswith("\ufffd"):
            out.write(text[len(shown) :])
            out.flush()
            shown = text
    out.write("\n")
    return str(cfg.prompt) + tok.decode(new)


def main() -> None:
    """Console script ``llmworks-generate prompt="..."``: the same app as pipelines/generate.py."""
    import hydra

    from llmworks.cli import run_stage
    from llmworks.config import CONF_DIR

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="generate")
    def app(cfg: DictConfig) -> None:
        run_stage(generate_text, cfg)

    app()
