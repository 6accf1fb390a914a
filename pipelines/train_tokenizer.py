"""DVC stage `train_tokenizer@<name>`: data/corpus -> data/tokenizers/<name>/tokenizer.json.

Trains every tokenizer in `tokenizers` unless `+only=<name>` picks one.
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.tokenization.train import tokenizer_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(tokenizer_stage, cfg)


if __name__ == "__main__":
    main()
