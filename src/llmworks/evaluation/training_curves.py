"""The training part of the evaluate stage: every trained family's final training metrics
side by side (``metrics/train/<family>.json``, one row per metric), and its training and
validation losses from the ``dvc plots`` CSVs in one figure."""

from __future__ import annotations

import json
from collections.abc import Sequence

from llmworks.evaluation import plots
from llmworks.evaluation.recorder import Recorder
from llmworks.training.logs import read_metrics_csv


def training(rec: Recorder, families: Sequence[str]) -> None:
    paths = rec.paths
    finals = {
        name: json.loads(paths.train_metrics(name).read_text())
        for name in families
        if paths.train_metrics(name).is_file()
    }
    names = list(dict.fromkeys(k for m in finals.values() for k in m))
    if finals:
        rec.table(
            "training",
            "Final training and validation metrics",
            ["metric", *finals],
            [[k, *(m.get(k, "") for m in finals.values())] for k in names],
            log=False,  # W&B has these as each training run's final/* metrics
        )
    logs = {}
    for name in families:
        rows: dict[int, dict[str, float]] = {}
        for series in ("train", "val"):
            path = paths.plot_csv(name, series)
            for step, values in (read_metrics_csv(path) if path.is_file() else {}).items():
                rows.setdefault(step, {}).update(values)
        if rows:
            logs[name] = rows
    path = plots.plot_training_curves(logs, rec.assets / "training_curves.png", ("loss",))
    rec.figure("training_curves", path, "Training and validation loss")
