"""DVC stage `train_word2vec`: data/corpus/dataset -> models/word2vec (vectors, word2vec
text and binary exports) and metrics/word2vec.json: skip-gram or CBOW with negative sampling
(`word2vec=<preset>`, conf/word2vec/), resumed from runs/word2vec/checkpoints after a crash."""

from functools import partial

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.recipe import training_stage
from llmworks.training.word2vec import WORD2VEC_FAMILY


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(partial(training_stage, WORD2VEC_FAMILY), cfg)


if __name__ == "__main__":
    main()
