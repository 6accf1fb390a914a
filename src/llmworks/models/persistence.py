"""One on-disk format for every Transformer we train: ``model.safetensors`` + ``config.json``,
loadable without Hydra or Lightning."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from torch import nn

from llmworks.errors import LlmworksError

WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def save_model_dir(model: nn.Module, config: Any, out_dir: str | Path) -> Path:
    """Write the weights (tied tensors stored once) and the config dataclass."""
    from safetensors.torch import save_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")
    return out_dir


def load_model_dir(
    model_cls: Any, config_cls: Any, model_dir: str | Path, map_location: str = "cpu"
) -> Any:
    """Rebuild ``model_cls(config)`` from what :func:`save_model_dir` wrote, in eval mode. A
    directory without its weights or config, or with a damaged one, is a one-line
    ``LlmworksError`` naming the file."""
    from safetensors.torch import load_model

    model_dir = Path(model_dir)
    fix = f"restore it (dvc checkout {model_dir}) or train it again (dvc repro)"
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise LlmworksError(f"{model_dir} has no {name}; {fix}")
    try:
        saved = json.loads((model_dir / CONFIG_FILE).read_text())
        # a switch added after the model was saved takes its dataclass default (the old one)
        config = config_cls(
            **{f.name: saved[f.name] for f in fields(config_cls) if f.name in saved}
        )
    except (ValueError, TypeError) as exc:
        raise LlmworksError(f"{model_dir / CONFIG_FILE} is damaged ({exc}); {fix}") from exc
    model = model_cls(config)
    try:
        load_model(model, str(model_dir / WEIGHTS_FILE), device=map_location)
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise LlmworksError(f"{model_dir / WEIGHTS_FILE} is damaged ({reason}); {fix}") from exc
    return model.eval()
