"""Label texts with a fine-tuned classifier (models/finetuned/bert by default)::

python pipelines/classify.py text="The river flows into the sea."
python pipelines/classify.py text="..." text_pair="..." model_dir=models/finetuned/gpt
"""

import sys

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


def _quote_text(arg: str) -> str:
    """``text=...`` quoted: Hydra's override grammar would read brackets, commas and quotes
    in free text as its own syntax."""
    key, eq, value = arg.partition("=")
    if (
        key not in ("text", "text_pair")
        or not eq
        or (value[:1] in "'\"" and value[-1:] == value[:1])
    ):
        return arg
    return f"{key}='" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@hydra.main(version_base="1.3", config_path="../conf", config_name="classify")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch and Lightning load
    from llmworks.finetune.classify import run_classify

    run_stage(run_classify, cfg)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *map(_quote_text, sys.argv[1:])]
    main()
