"""DVC stage `train_bert`: data/tokens/<bert.tokenizer> -> models/bert/ + metrics/bert.json.

Masked-LM pretraining of the `bert=<preset>` model (conf/bert/), resumed from
models/bert/checkpoints/last.ckpt when a previous run was interrupted.
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.mlm_module import train_bert


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(train_bert, cfg)


if __name__ == "__main__":
    main()
