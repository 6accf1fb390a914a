"""DVC stage `report`: metrics/*.json and report/assets/ -> report/index.html, a static page
that opens offline. `python pipelines/report.py`."""

import hydra
from omegaconf import DictConfig

from llmworks.cli import run_stage
from llmworks.report.stage import report_stage


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_stage(report_stage, cfg)


if __name__ == "__main__":
    main()
