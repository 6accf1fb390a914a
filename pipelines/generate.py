"""Stream a continuation of a prompt from the trained GPT (models/gpt by default)::

python pipelines/generate.py prompt="The history of" temperature=0
python pipelines/generate.py prompt="The" checkpoint=runs/gpt/checkpoints/best.ckpt
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch and Lightning load
    from llmworks.families.gpt.generate import generate_text

    run_stage(generate_text, cfg)


if __name__ == "__main__":
    main()
