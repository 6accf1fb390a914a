"""Writes that never leave a half-written artifact behind: stage to a sibling, then rename.

Scratch files and directories are named ``.llmworks-scratch-*``: ``.dvcignore`` hides them
from DVC, so one left behind by a killed stage never enters an output's or a dependency's
hash, and the next run of the stage removes it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCRATCH = ".llmworks-scratch-"


@contextmanager
def scratch_dir(parent: str | Path, name: str) -> Iterator[Path]:
    """A scratch directory beside the output it will replace (the same filesystem, so the
    final move is atomic). Scratch of ``name`` left by an earlier, killed run is removed
    first; this one is removed at the end, whatever happens."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f"{SCRATCH}{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH}{name}-", dir=parent) as tmp:
        yield Path(tmp)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (a crash leaves the old file, never a truncated one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{SCRATCH}{path.name}.", dir=path.parent)
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
    old = target.with_name(f"{SCRATCH}{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)
    return target
