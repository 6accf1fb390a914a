"""Fill in the blanks with the trained BERT (models/bert by default)::

python pipelines/fill_mask.py text="The capital of France is [MASK]."
python pipelines/fill_mask.py text="..." top_k=10 model_dir=path/to/bert
"""

import sys

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


def _quote_text(arg: str) -> str:
    """``text=... [MASK] ...`` quoted: Hydra's override grammar would read the brackets of
    ``[MASK]`` as a list."""
    key, eq, value = arg.partition("=")
    if key != "text" or not eq or (value[:1] in "'\"" and value[-1:] == value[:1]):
        return arg
    return "text='" + value.replace("'", "\\'") + "'"


@hydra.main(version_base="1.3", config_path="../conf", config_name="fill_mask")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch and Lightning load
    from llmworks.families.bert.fill_mask import run_fill_mask

    run_stage(run_fill_mask, cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *map(_quote_text, sys.argv[1:])]
    main()
