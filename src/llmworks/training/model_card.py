"""A Hugging Face model card (``README.md``) for every exported model, so a pushed or shared
model directory explains itself: what was trained, on which corpus and tokenizer, with what
result, from which config, and how to load it. Written with ``huggingface_hub``'s
``ModelCard``/``ModelCardData`` (the YAML header the Hub reads, then the text)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llmworks.models.hub import looks_like_hub_id
from llmworks.spec import CardSpec


def write_card(
    out_dir: Path,
    spec: CardSpec,
    *,
    title: str,
    experiment: str,
    corpus: dict[str, Any],
    tokenizer: str | None,
    metrics: dict[str, Any],
    config: dict[str, Any],
    base_model: str | None = None,
    results: str = "Results at the end of training (validation split)",
    results_note: str = "The test-split figures of the same run are in `metrics/evaluation.json` "
    "(`dvc repro evaluate`).",
) -> Path:
    """``<out_dir>/README.md``; ``base_model`` is the checkpoint training continued from
    (a hub id goes into the card's metadata, where the Hub links it)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        language="en",
        library_name=spec.library,
        pipeline_tag=spec.pipeline_tag,
        model_name=f"llmworks {title} ({experiment})",
        tags=["llmworks", "dvc", "pytorch-lightning"],
        base_model=base_model if base_model and looks_like_hub_id(base_model) else None,
    )
    continued = f"\n- **Continued from**: `{base_model}`" if base_model else ""
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items() if v is not None)
    source = ", ".join(f"{k}={v}" for k, v in corpus.items() if v not in (None, "", []))
    text = f"""---
{data.to_yaml()}
---

# {title}, experiment `{experiment}`

Trained by llmworks, a reproducible pipeline from raw text to tokenizers and the models of
the language-model story, word vectors to Transformers (PyTorch Lightning, tracked by DVC).

- **Corpus**: {source}
- **Tokenizer**: {tokenizer or "words of the corpus"} (its `tokenizer.json` sits in this
  directory){continued}
- **Parameters**: {_fmt(metrics.get("params"))}; **steps**: {_fmt(metrics.get("steps"))}

## {results}

| metric | value |
|---|---|
{rows}

{results_note}

## How to load

```python
{spec.how_to_load.format(path=".")}
```

## Configuration

```yaml
{yaml.safe_dump(config, sort_keys=False).rstrip()}
```

Reproduce: check out the commit or `dvc exp apply` the experiment, then `dvc repro`.
"""
    path = out_dir / "README.md"
    ModelCard(text).save(path)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
