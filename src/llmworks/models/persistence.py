"""One on-disk format for every Transformer we train: ``model.safetensors`` + ``config.json``,
loadable without Hydra or Lightning."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from torch import nn

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
    """Rebuild ``model_cls(config)`` from what :func:`save_model_dir` wrote, in eval mode."""
    from safetensors.torch import load_model

    model_dir = Path(model_dir)
    saved = json.loads((model_dir / CONFIG_FILE).read_text())
    # a switch added after the model was saved takes its dataclass default (the old behaviour)
    config = config_cls(**{f.name: saved[f.name] for f in fields(config_cls) if f.name in saved})
    model = model_cls(config)
    load_model(model, str(model_dir / WEIGHTS_FILE), device=map_location)
    return model.eval()
