"""Pictures for the report, as PNG files that open offline: training curves, a 2-D map of
word vectors, attention heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(
    logs: Mapping[str, Mapping[int, Mapping[str, float]]],
    out: str | Path,
    metrics: Sequence[str] = ("loss",),
) -> Path | None:
    """One panel per model (``{model: {step: {metric: value}}}``): every logged series whose
    name contains one of ``metrics``."""
    from llmworks.training.logs import series

    found = {name: log for name, log in logs.items() if log}
    if not found:
        return None
    fig, axes = plt.subplots(1, len(found), figsize=(5 * len(found), 3.6), squeeze=False)
    for ax, (name, log) in zip(axes[0], found.items(), strict=True):
        keys = sorted({k for row in log.values() for k in row if any(m in k for m in metrics)})
        for key in keys:
            steps, values = series(log, key)
            if len(steps):
                ax.plot(steps, values, label=key, marker="o" if len(steps) < 20 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Vectors -> 2-D points. PCA keeps global directions (e.g. king - man); t-SNE keeps
    neighbourhoods, so clusters stand out but distances between clusters mean little."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    if method == "pca":
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        return x @ vt[:2].T
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    raise ValueError(f"unknown projection {method!r}: expected pca or tsne")


def plot_word_map(
    words: Sequence[str],
    vectors: np.ndarray,
    out: str | Path,
    highlight: Sequence[str] = (),
    method: str = "pca",
) -> Path:
    """Word vectors in 2-D (PCA or t-SNE), every word labelled; probe words in colour."""
    xy = project_2d(vectors, method)
    fig, ax = plt.subplots(figsize=(9, 7))
    marked = set(highlight)
    colors = ["tab:red" if w in marked else "tab:blue" for w in words]
    ax.scatter(xy[:, 0], xy[:, 1], s=8, c=colors, alpha=0.6)
    for (px, py), word in zip(xy, words, strict=True):
        ax.annotate(
            word,
            (px, py),
            fontsize=7 if word not in marked else 9,
            color="tab:red" if word in marked else "0.25",
        )
    name = {"pca": "PCA", "tsne": "t-SNE"}.get(method, method)
    shown = marked & set(words)
    ax.set_title(f"{name} map of word vectors" + (" (probe words in red)" if shown else ""))
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, out)


def plot_attention(
    attention: np.ndarray,
    tokens: Sequence[str],
    out: str | Path,
    title: str,
    layers_heads: Sequence[tuple[int, int]] | None = None,
) -> Path:
    """Heatmaps of attention weights ``[layer, head, query, key]`` for chosen (layer, head)."""
    att = np.asarray(attention)
    n_layer, n_head = att.shape[:2]
    picks = list(layers_heads or [(0, 0), (n_layer - 1, 0), (n_layer - 1, n_head - 1)])
    fig, axes = plt.subplots(
        1, len(picks), figsize=(4.2 * len(picks), 4.8), squeeze=False, layout="constrained"
    )
    for ax, (layer, head) in zip(axes[0], picks, strict=True):
        ax.imshow(att[layer, head], cmap="viridis", vmin=0.0)
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
    fig.suptitle(title)
    return _save(fig, out)


def plot_representations(
    scores: dict[str, dict[str, float]],
    out: str | Path,
    metrics: Sequence[str] = ("accuracy", "mrr"),
) -> Path:
    """Grouped bars, one group per representation; chance drawn as a dashed line."""
    chance = scores.get("chance", {})
    names = [n for n in scores if n != "chance"]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 3.8))
    width = 0.8 / len(metrics)
    x = np.arange(len(names))
    for i, metric in enumerate(metrics):
        values = [scores[n].get(metric, 0.0) for n in names]
        bars = ax.bar(x + (i - (len(metrics) - 1) / 2) * width, values, width, label=metric)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
        if metric in chance:
            ax.axhline(chance[metric], color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("Which document does a held-out paragraph come from? (dashed: chance)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_downstream(
    scores: dict[str, dict[str, float]], chance: float, out: str | Path, task: str
) -> Path:
    """Grouped bars of test accuracy, one group per model, one bar per mode it ran."""
    names = list(scores)
    modes = list(dict.fromkeys(mode for s in scores.values() for mode in s))
    fig, ax = plt.subplots(figsize=(1.5 * len(names) + 3, 3.8))
    width = 0.8 / max(len(modes), 1)
    x = np.arange(len(names))
    for i, mode in enumerate(modes):
        values = [scores[n].get(mode, np.nan) for n in names]
        bars = ax.bar(x + (i - (len(modes) - 1) / 2) * width, values, width, label=mode)
        ax.bar_label(bars, labels=[f"{v:.2f}" if v == v else "" for v in values], fontsize=7)
    ax.axhline(chance, color="grey", ls="--", lw=1)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Task {task} (dashed: chance)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], out: str | Path, title: str) -> Path:
    """A confusion matrix with its counts; long label names cut to 24 characters."""
    short = [name if len(name) <= 24 else name[:23] + "…" for name in labels]
    size = 2.5 + 0.45 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        if n:
            color = "white" if n > matrix.max() / 2 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(short)), short, rotation=90, fontsize=7)
    ax.set_yticks(range(len(short)), short, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
