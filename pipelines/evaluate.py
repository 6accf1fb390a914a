"""DVC stage `evaluate`: trained models -> metrics/evaluation.json (test-split metrics and the
representation comparison) and report/assets/ (figures, samples, token views).
`python pipelines/evaluate.py evaluate.max_test_batches=null`."""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # imported once Hydra has accepted the config: a mistyped override is reported
    # before torch and Lightning load
    from llmworks.evaluation.stage import evaluate_stage

    run_stage(evaluate_stage, cfg)


if __name__ == "__main__":
    main()
