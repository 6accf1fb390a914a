"""DVC stage `train@<family>`: one model family trained by the one recipe -- token shards (or
the corpus) -> models/<family> (safetensors + the family's exports) and metrics/train/,
resumed from runs/<family>/checkpoints/last.ckpt after a crash.

    python pipelines/train.py family=gpt gpt=llama_small trainer=ddp_cpu
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch loads, and a bad value before Lightning does
    from llmworks.training.preflight import training_stage

    run_stage(training_stage, cfg)


if __name__ == "__main__":
    main()
