"""Published models as reference points (``evaluate.references``: hub ids or directories):
each one scored on our test split by the scorer our model of its kind uses -- bits per byte
and word perplexity for a causal LM, masked-LM accuracy at the same mask rate for a masked
LM -- with its own tokenizer, and set in one table beside our model's figures. Which family
scores a reference follows from its architecture (a family's ``REFERENCE_TYPES``); the
part names no family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmworks.errors import LlmworksError
from llmworks.evaluation.recorder import Evaluation, FamilyEvaluation
from llmworks.models.hub import read_config, resolve


def references(rec: Evaluation, parts: Mapping[str, FamilyEvaluation]) -> None:
    sources = [str(s) for s in rec.cfg.evaluate.references or []]
    scored: dict[str, dict[str, Any]] = {}
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for source in sources:
        try:
            path = resolve(source, "evaluate.references")
            kind = read_config(path).model_type
            family = next(
                (n for n, p in parts.items() if kind in getattr(p, "REFERENCE_TYPES", ())), None
            )
            if family is None:
                claimed = sorted(
                    t for p in parts.values() for t in getattr(p, "REFERENCE_TYPES", ())
                )
                raise LlmworksError(f"model_type {kind!r}: no family scores it (scored: {claimed})")
            scored[source] = parts[family].score_reference(rec, source, path)
        except LlmworksError as exc:
            rec.skip(f"reference {source}", str(exc))
            continue
        if family not in rows:  # our model of that family first
            rows[family] = [(f"ours ({family})", rec.metrics.get(family, {}))]
        rows[family].append((source, scored[source]))
    if not scored:
        return
    rec.record("references", scored)
    for family, models in rows.items():
        columns = list(dict.fromkeys(k for _, m in models[1:] for k in m))
        rec.table(
            f"references_{family}",
            "Published models beside ours on the test split (each with its own tokenizer)",
            ["model", *columns],
            [[name, *(m.get(k, "") for k in columns)] for name, m in models],
            log=False,
        )
