"""Composing ``conf/`` outside a Hydra app: for tests, notebooks and ``params.yaml``.

``dvc repro`` reads ``params.yaml`` as it is, so the committed file must equal the composed
defaults; ``python -m llmworks.config`` rewrites it after a change to ``conf/``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"


def compose_config(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """The config a stage would see for these overrides (struct mode: unknown keys fail)."""
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def params_yaml(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> str:
    return OmegaConf.to_yaml(compose_config(overrides, conf_dir), resolve=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write params.yaml from conf/ (+ overrides).")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=smoke")
    parser.add_argument("--out", default=str(REPO_ROOT / "params.yaml"))
    args = parser.parse_args(argv)
    Path(args.out).write_text(params_yaml(args.overrides))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
