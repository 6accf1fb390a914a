"""DVC stage `train_gpt`: token shards -> models/gpt (checkpoints, safetensors, HF export)
and metrics/gpt.json. `python pipelines/train_gpt.py gpt=llama_small trainer=ddp_cpu`."""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.gpt import train_gpt


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(train_gpt, cfg)


if __name__ == "__main__":
    main()
