"""DVC stage `prepare_task`: the labelled task of the finetune stage (`task=...`) -> data/task/
(train/validation/test examples with integer labels, and the label names).

    python pipelines/prepare_task.py task=local 'task.data_files={train: train.csv, test: test.csv}'
"""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.finetune.task import prepare_task_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(prepare_task_stage, cfg)


if __name__ == "__main__":
    main()
