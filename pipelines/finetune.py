"""DVC stage `finetune`: every representation on the labelled task (data/task) -- a linear
probe of each and full fine-tuning of BERT and GPT -> metrics/finetune.json, test predictions,
and models/finetuned/<family>/ (resumed from runs/finetune/ after a crash).

    python pipelines/finetune.py 'finetune.models=[tfidf,bert]' finetune.train.max_epochs=10
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch loads, and a bad value before Lightning does
    from llmworks.finetune.preflight import finetune_stage

    run_stage(finetune_stage, cfg)


if __name__ == "__main__":
    main()
