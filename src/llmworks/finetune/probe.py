"""Logistic regression on fixed features: the bag-of-words, TF-IDF and averaged-Word2Vec
baselines, and the frozen linear probes of the Transformers, all the same way (scikit-learn's
``LogisticRegression``; the inverse regularisation ``C`` chosen on the validation split from
``finetune.probe.C``). A pair task's features are ``[u, v, |u - v|, u * v]`` of the two
texts' vectors (as InferSent and SentEval do): a fixed representation cannot read the two
texts together, the product and difference let a linear model compare them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from llmworks.evaluation.embedders import ArrayLike, Embedder, transformer_embedder
from llmworks.finetune.settings import ProbeConfig
from llmworks.finetune.task import Split, Task
from llmworks.tokenization.files import read_tokenizer


def features(embed: Embedder, split: Split) -> ArrayLike:
    """One row per example: the text's vector, or for pairs ``[u, v, |u - v|, u * v]``."""
    u = embed(split.texts)
    if split.pairs is None:
        return u
    v = embed(split.pairs)
    if sparse.issparse(u):
        u, v = sparse.csr_matrix(u), sparse.csr_matrix(v)
        return sparse.hstack([u, v, abs(u - v), u.multiply(v)], format="csr")
    u, v = np.asarray(u), np.asarray(v)
    return np.hstack([u, v, np.abs(u - v), u * v])


def scores(labels: Sequence[int], predicted: Sequence[int], n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (every label weighs the same, whatever its count)."""
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(
                labels, predicted, average="macro", labels=list(range(n_labels)), zero_division=0.0
            )
        ),  # fmt: skip
    }


def linear_probe(embed: Embedder, task: Task, cfg: ProbeConfig, seed: int) -> dict[str, Any]:
    """Logistic regression on ``embed``'s fixed features: fit on train for every ``C``, keep
    the best on validation (ties: the smaller ``C``, the simpler model), score on test.
    Returns the test scores, the chosen ``C`` and the test predictions."""
    x = {name: features(embed, split) for name, split in task.splits.items()}
    y = {name: np.asarray(split.labels) for name, split in task.splits.items()}
    best: tuple[float, float, Any] | None = None
    for c in sorted(cfg.C):
        model = _classifier(x["train"], c, cfg.max_iter, seed).fit(x["train"], y["train"])
        val = accuracy_score(y["validation"], model.predict(x["validation"]))
        if best is None or val > best[0]:
            best = (val, c, model)
    assert best is not None
    val_acc, c, model = best
    predicted = model.predict(x["test"]).tolist()
    return {
        "scores": scores(y["test"], predicted, task.n_labels) | {"val_accuracy": float(val_acc)},
        "C": c,
        "predictions": predicted,
    }


def _classifier(x: ArrayLike, c: float, max_iter: int, seed: int):
    lr = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    if sparse.issparse(x):
        return lr  # TF-IDF rows are unit length already; counts keep their scale
    return make_pipeline(StandardScaler(), lr)  # pooled states differ in scale by dimension


def frozen_states(model, tokenizer_json, context: int, cfg, device) -> Embedder:
    """A Transformer's mean-pooled final states as fixed probe features: texts cut to the
    shorter of the model's context and ``finetune.max_len``, batches of 4 x
    ``finetune.batch_size`` (no gradients, so larger than training's)."""

    max_len = min(context, int(cfg.finetune.max_len))
    batch = int(cfg.finetune.batch_size) * 4
    return transformer_embedder(model.to(device), read_tokenizer(tokenizer_json), max_len, batch)
