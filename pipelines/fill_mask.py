"""Fill in the blanks with the trained BERT (models/bert by default)::

    python pipelines/fill_mask.py text="The capital of France is [MASK]."
    python pipelines/fill_mask.py text="..." top_k=10 model_dir=path/to/bert

`text`, `top_k` and `model_dir` are short for `bert.fill_mask.<key>`.
"""

import sys

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.mlm_module import run_fill_mask

SHORT = ("text", "top_k", "model_dir")


def _alias(arg: str) -> str:
    """``text=...`` -> ``bert.fill_mask.text='...'``: quoted, because Hydra's override grammar
    would read the brackets of ``[MASK]`` as a list."""
    key, eq, value = arg.partition("=")
    if key not in SHORT or not eq:
        return arg
    if key == "text" and not (value[:1] in "'\"" and value[-1:] == value[:1]):
        value = "'" + value.replace("'", "\\'") + "'"
    return f"bert.fill_mask.{key}={value}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(run_fill_mask, cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *map(_alias, sys.argv[1:])]
    main()
