"""DVC stage `train_word2vec`: data/corpus/dataset -> models/word2vec/ + metrics/word2vec.json.

Skip-gram or CBOW with negative sampling (`word2vec=<preset>`, conf/word2vec/), evaluated on
WordSim353, SimLex-999 and the Google analogies, exported in word2vec text and binary format.
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.training.word2vec_module import train_word2vec


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(train_word2vec, cfg)


if __name__ == "__main__":
    main()
