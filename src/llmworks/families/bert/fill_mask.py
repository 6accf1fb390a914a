"""Fill in the blanks with a trained BERT (``pipelines/fill_mask.py``), the masked-LM
counterpart of ``llmworks.generation``."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.families.bert.model import Bert
from llmworks.models.persistence import CONFIG_FILE
from llmworks.paths import TOKENIZER_FILE, Paths

MASK = "[MASK]"


def fill_mask(
    model_dir: str | Path, texts: list[str], top_k: int
) -> list[list[list[tuple[str, float]]]]:
    """For each text, for each ``[MASK]`` in it, the ``top_k`` (token, probability) pairs of
    the model saved in ``model_dir`` (``model.safetensors`` + ``config.json`` + ``tokenizer.json``)."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file() or not (model_dir / TOKENIZER_FILE).is_file():
        raise LlmworksError(
            f"{model_dir} holds no trained BERT; train one first (dvc repro train@bert)"
        )
    model, tok = Bert.load(model_dir), Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
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
