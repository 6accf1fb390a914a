"""DVC stage `corpus`: raw text -> data/corpus/dataset + data/corpus/corpus_stats.json."""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.corpus.prepare import corpus_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(corpus_stage, cfg)


if __name__ == "__main__":
    main()
