"""Fill in the blanks with a BERT (``pipelines/fill_mask.py``), the masked-LM counterpart of
``pipelines/generate.py``: ours (a trained model directory) or a Hugging Face BERT, RoFormer
or Megatron-BERT (a hub id or a directory), imported into our ``Bert``."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.families.bert.hf import from_hf
from llmworks.families.bert.model import Bert
from llmworks.models.hub import is_hf_checkpoint, looks_like_hub_id
from llmworks.models.persistence import CONFIG_FILE
from llmworks.paths import TOKENIZER_FILE, Paths
from llmworks.tokenization.files import read_tokenizer

MASK = "[MASK]"


def fill_mask(
    model_dir: str | Path, texts: list[str], top_k: int
) -> list[list[list[tuple[str, float]]]]:
    """For each text, for each ``[MASK]`` in it, the ``top_k`` (token, probability) pairs of
    the model in ``model_dir``: ours (``model.safetensors`` + ``config.json`` +
    ``tokenizer.json``) or a Hugging Face checkpoint (a directory or a hub id)."""

    path = Path(str(model_dir)).expanduser()
    if is_hf_checkpoint(path) or looks_like_hub_id(model_dir):
        model, path = from_hf(str(model_dir), where="model_dir")
    elif (path / CONFIG_FILE).is_file() and (path / TOKENIZER_FILE).is_file():
        model = Bert.load(path)
    else:
        raise LlmworksError(
            f"{model_dir} holds no trained BERT; train one first (dvc repro train@bert) or "
            "give model_dir=<a Hugging Face BERT: hub id or directory>"
        )
    if not (path / TOKENIZER_FILE).is_file():
        raise LlmworksError(f"{path}: no {TOKENIZER_FILE} beside the model")
    tok = read_tokenizer(path / TOKENIZER_FILE)
    mask_id = tok.token_to_id(MASK)
    results = []
    for text in texts:
        ids = torch.tensor(tok.encode(text).ids[: model.config.max_seq_len])
        if not (ids == mask_id).any():
            raise LlmworksError(
                f"no {MASK} in {text!r}: write {MASK} where a word should be filled"
            )
        probs, top = model.fill_mask(ids, mask_id, top_k)
        results.append(
            [
                [(tok.id_to_token(int(i)), float(p)) for p, i in zip(row_p, row_i, strict=True)]
                for row_p, row_i in zip(probs, top, strict=True)
            ]
        )
    return results


def run_fill_mask(cfg: DictConfig) -> list:
    """Print the top-k fillers of every ``[MASK]`` in ``cfg.text`` (``conf/fill_mask.yaml``)."""
    if not cfg.text:
        raise LlmworksError(
            'give a text: python pipelines/fill_mask.py text="Paris is the [MASK]."'
        )
    texts = [cfg.text] if isinstance(cfg.text, str) else list(cfg.text)
    model_dir = cfg.model_dir or Paths.from_config(cfg).model("bert")
    results = fill_mask(model_dir, texts, int(cfg.top_k))
    for text, masks in zip(texts, results, strict=True):
        print(text)
        for m, candidates in enumerate(masks):
            print(f"  {MASK} #{m + 1}:")
            for token, p in candidates:
                print(f"    {p:7.2%}  {token}")
    return results
