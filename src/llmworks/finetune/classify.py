"""Label texts with a fine-tuned classifier (``pipelines/classify.py``): the model directory
the finetune stage wrote (``models/finetuned/<family>``), rebuilt through its family, so the
labels are the stage's own predictions."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError
from llmworks.finetune.classifier import encode_batch, forward, load_classifier
from llmworks.paths import Paths


@torch.no_grad()
def classify(
    model_dir: str | Path, texts: list[str], pairs: list[str] | None, top_k: int
) -> list[list[tuple[str, float]]]:
    """For each text (with its pair), the ``top_k`` (label, probability) pairs."""
    net, tokenizer, config = load_classifier(model_dir)
    if pairs is not None and len(pairs) != len(texts):
        raise LlmworksError(f"{len(texts)} texts but {len(pairs)} text_pair values: give one each")
    if pairs is not None and config.family != "bert":
        raise LlmworksError(f"{model_dir} is a {config.family} classifier, which reads one text")
    probs = forward(net, encode_batch(tokenizer, texts, pairs)).float().softmax(-1)
    top = probs.topk(min(top_k, config.n_labels), dim=-1)
    return [
        [(config.labels[int(i)], float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]


def run_classify(cfg: DictConfig) -> list:
    """Print each text's most probable labels (``conf/classify.yaml``)."""
    if not cfg.text:
        raise LlmworksError('give a text: python pipelines/classify.py text="A paragraph."')
    texts = [cfg.text] if isinstance(cfg.text, str) else list(map(str, cfg.text))
    pairs = cfg.text_pair
    pairs = None if pairs is None else [pairs] if isinstance(pairs, str) else list(map(str, pairs))
    if int(cfg.top_k) < 1:
        raise LlmworksError(f"top_k={cfg.top_k}: expected >= 1")
    model_dir = Path(str(cfg.model_dir or Paths.from_config(cfg).finetuned / "bert"))
    if not model_dir.is_dir():
        raise LlmworksError(f"no {model_dir}: run dvc repro finetune first, or give model_dir=")
    results = classify(model_dir, texts, pairs, int(cfg.top_k))
    for text, labels in zip(texts, results, strict=True):
        print(text)
        for label, p in labels:
            print(f"  {p:7.2%}  {label}")
    return results
