"""DVC stage `train_bert`: WordPiece token shards -> models/bert (safetensors, HF export)
and metrics/bert.json: masked-LM pretraining of the `bert=<preset>` model (conf/bert/),
resumed from runs/bert/checkpoints/last.ckpt after a crash."""

from functools import partial

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.bert import BERT_FAMILY
from llmworks.training.recipe import training_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(partial(training_stage, BERT_FAMILY), cfg)


if __name__ == "__main__":
    main()
