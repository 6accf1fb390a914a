"""Writes that never leave a half-written artifact behind: stage to a sibling, then rename."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (a crash leaves the old file, never a truncated one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write strict JSON atomically: NaN and infinities (a correlation over too few pairs,
    say) become ``null``, which every JSON reader and ``dvc metrics`` accept."""
    text = json.dumps(finite(data), indent=2, ensure_ascii=False, allow_nan=False)
    return write_text(path, text + "\n")


def finite(data: Any) -> Any:
    """``data`` with every non-finite float replaced by None, at any depth."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def replace_dir(staged: str | Path, target: str | Path) -> Path:
    """Move a fully written directory into place, replacing the old one only at the end."""
    staged, target = Path(staged), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)
    return target
