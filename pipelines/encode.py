"""DVC stage `encode@<name>`: corpus + tokenizer -> data/tokens/<name>/{split}.bin + meta.json.

Encodes with every tokenizer in `tokenizers` unless `+only=<name>` picks one.
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.data.encode import encode_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(encode_stage, cfg)


if __name__ == "__main__":
    main()
