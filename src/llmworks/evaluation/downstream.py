"""The report's "Downstream" section: every model of the finetune stage on the labelled
task's test split, probe and fine-tuned side by side (a table and a bar chart), and the
confusion matrix of the best one (scikit-learn's ``confusion_matrix``). It reads what the
finetune stage wrote (``metrics/finetune.json``, ``metrics/finetune_predictions.json``) and
is skipped, with its reason, where that stage has not run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from sklearn.metrics import confusion_matrix

from llmworks.errors import LlmworksError
from llmworks.evaluation import plots

if TYPE_CHECKING:
    from llmworks.evaluation.recorder import Recorder

MODES = {"finetuned": "fine-tuned", "probe": "linear probe"}


def downstream(rec: Recorder) -> None:
    paths = rec.paths
    if not paths.finetune_metrics.is_file() or not paths.finetune_predictions.is_file():
        raise LlmworksError(f"no {paths.finetune_metrics}: the finetune stage has not run")
    metrics = json.loads(paths.finetune_metrics.read_text())
    preds = json.loads(paths.finetune_predictions.read_text())
    if "skipped" in metrics:
        raise LlmworksError(metrics["skipped"])
    task = metrics.pop("task")
    models = {m: r for m, r in metrics.items() if isinstance(r, dict)}
    rows = [
        [model]
        + [_cell(r.get(mode, {}).get(k)) for mode in MODES for k in ("accuracy", "macro_f1")]
        for model, r in models.items()
    ]  # fmt: skip
    chance = 1.0 / task["labels"]
    rec.table(
        "downstream",
        f"Task {task['task']}: {task['labels']} labels, {task['train_examples']} training and "
        f"{task['test_examples']} test examples{' (text pairs)' if task['pairs'] else ''}; "
        f"test-split scores (chance accuracy {chance:.2f}; —: the model has no such mode)",
        ["model", "fine-tuned accuracy", "fine-tuned macro-F1", "probe accuracy",
         "probe macro-F1"],
        rows,
    )  # fmt: skip
    bars = {m: {MODES[mode]: r[mode]["accuracy"] for mode in MODES if mode in r}
            for m, r in models.items()}  # fmt: skip
    path = plots.plot_downstream(bars, chance, rec.assets / "downstream.png", task["task"])
    rec.figure("downstream", path, "Test accuracy of every model, probe and fine-tuned")
    best_model, best_mode, best = max(
        ((m, mode, r[mode]["accuracy"]) for m, r in models.items() for mode in MODES if mode in r),
        key=lambda x: x[2],
    )
    predicted = preds["models"][best_model][best_mode]
    labels = list(range(len(preds["labels"])))
    matrix = confusion_matrix(preds["test_labels"], predicted, labels=labels)
    path = plots.plot_confusion(matrix, preds["labels"], rec.assets / "downstream_confusion.png",
                                f"{best_model} ({MODES[best_mode]}), accuracy {best:.2f}")  # fmt: skip
    rec.figure("downstream_confusion", path, f"Confusion matrix of the best: {best_model}, "
               f"{MODES[best_mode]} (rows: true label, columns: predicted)")  # fmt: skip


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
