"""Lightning's CSV log, read once: the per-series CSVs that ``dvc plots`` and the report draw.

``CSVLogger`` writes one row per log call, each with only the metrics of that call, so a row
holds a training loss, or a validation loss, or a throughput figure. A run resumed after a
crash logs into a new version directory of its run; reading merges the versions, each later
one replacing the earlier ones from its first step on (the steps trained again after the
resume), so the curve has one value per step from the very first step.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from llmworks.io import write_text

LOG_FILE = "metrics.csv"


def read_metrics_csv(path: str | Path) -> dict[int, dict[str, float]]:
    """``{step: {metric: value}}`` from a CSV with a ``step`` column (Lightning's sparse rows
    or our per-series files), blank and non-numeric cells skipped, rows of a step merged."""
    by_step: dict[int, dict[str, float]] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("step") in (None, ""):
                continue
            merged = by_step.setdefault(int(float(row["step"])), {})
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    merged[key] = float(value)
                except ValueError:
                    continue
    return by_step


def merge_sessions(
    logs: Iterable[str | Path], key: str = "train_loss"
) -> dict[int, dict[str, float]]:
    """One log from the logs of successive sessions of a run (oldest first): a later session
    replaces everything the earlier ones logged from its first training step on (the first
    step with ``key``; Lightning's ThroughputMonitor logs validation rows under the
    validation loop's own small step numbers, which must not count)."""
    merged: dict[int, dict[str, float]] = {}
    for path in logs:
        if not Path(path).is_file():
            continue
        session = read_metrics_csv(path)
        trained = [s for s, row in session.items() if key in row]
        if trained:
            first = min(trained)
            merged = {s: v for s, v in merged.items() if s < first}
        for step, row in session.items():
            merged.setdefault(step, {}).update(row)
    return merged


def series(log: Mapping[int, Mapping[str, float]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and finite values of one metric."""
    points = [(s, v[name]) for s, v in sorted(log.items()) if math.isfinite(v.get(name, math.nan))]
    return np.array([p[0] for p in points]), np.array([p[1] for p in points])


def write_plots(
    log: Mapping[int, Mapping[str, float]],
    out: Mapping[str, str | Path],
    columns: Mapping[str, Mapping[str, str]],
) -> dict[str, Path]:
    """One clean CSV per series for ``dvc plots``: ``columns={"train": {"train_loss":
    "train_loss", "lr": "lr/pg1"}}`` writes ``out["train"]`` with the columns ``step,
    train_loss, lr`` (column: logged name), one row per step at which the first was logged."""
    written = {}
    for name, cols in columns.items():
        first = next(iter(cols.values()))
        lines = [",".join(["step", *cols])]
        for step in sorted(log):
            row = log[step]
            if first in row:
                cells = ["" if c not in row else f"{row[c]:.8g}" for c in cols.values()]
                lines.append(",".join([str(step), *cells]))
        written[name] = write_text(out[name], "\n".join(lines) + "\n")
    return written
