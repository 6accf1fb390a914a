"""Stream a continuation of a prompt from the trained GPT:
`python pipelines/generate.py prompt="The history of" temperature=0 gpt.checkpoint=models/gpt`."""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.generation import generate_text


@hydra.main(version_base="1.3", config_path="../conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    run_stage(generate_text, cfg)


if __name__ == "__main__":
    main()
