"""Composing ``conf/`` outside a Hydra app (tests, notebooks, ``params.yaml``), and turning a
config section into the typed object a stage passes around.

``dvc repro`` reads ``params.yaml`` as it is, so the committed file must equal the composed
defaults; ``python -m llmworks.config`` rewrites it after a change to ``conf/``, resolved as
``dvc exp run`` writes it (interpolations such as ``${paths.data}`` replaced by their values).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from llmworks.errors import LlmworksError

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def compose_config(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """The config a stage would see for these overrides (struct mode: unknown keys fail)."""
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


T = TypeVar("T")


def typed(cls: type[T], node: Any, where: str, **derived: Any) -> T:
    """The dataclass ``cls`` from the config section ``node`` (named ``where`` in messages)
    plus values derived elsewhere (``vocab_size`` from the tokenizer, say). The section must
    hold exactly the fields of ``cls`` that are not derived: conf/ is the only source of
    values, so nothing falls back to a default written in code."""
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    missing = sorted(names - set(values) - set(derived))
    if unknown or missing:
        problems = [
            f"unknown key(s) {unknown}" if unknown else "",
            f"missing {missing}" if missing else "",
        ]
        raise LlmworksError(f"{where}: {'; '.join(p for p in problems if p)}")
    # the dataclasses do not check types: a switch given as `maybe` or 1 would read as true,
    # and a number given as `abc` would fail later with a message that names no key
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = values.get(field.name)
        if field.type in ("bool", bool) and field.name in values and not isinstance(value, bool):
            raise LlmworksError(f"{where}: {field.name}={value!r}: expected true or false")
        if field.type in ("float", "int", float, int) and isinstance(value, str):
            raise LlmworksError(f"{where}: {field.name}={value!r}: expected a number")
    try:
        return cls(**values, **derived)
    except (TypeError, ValueError) as exc:  # a bad switch (norm: mid) or shape is the user's
        raise LlmworksError(f"{where}: {exc}") from exc


def params_yaml(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> str:
    """``params.yaml`` as ``dvc exp run`` composes it (DVC resolves the interpolations)."""
    return OmegaConf.to_yaml(compose_config(overrides, conf_dir), resolve=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write params.yaml from conf/ (+ overrides).")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=smoke")
    parser.add_argument("--out", default=str(REPO_ROOT / "params.yaml"))
    args = parser.parse_args(argv)
    Path(args.out).write_text(params_yaml(args.overrides))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
