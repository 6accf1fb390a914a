"""DVC stage `train_gpt`: token shards -> models/gpt (safetensors, HF export) and
metrics/gpt.json, resumed from runs/gpt/checkpoints/last.ckpt after a crash.
`python pipelines/train_gpt.py gpt=llama_small trainer=ddp_cpu`."""

from functools import partial

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.gpt import GPT_FAMILY
from llmworks.training.recipe import training_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(partial(training_stage, GPT_FAMILY), cfg)


if __name__ == "__main__":
    main()
