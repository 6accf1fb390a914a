"""W&B: a stage's offline run records the full resolved config and its metrics, and a broken
W&B never stops a stage."""

from __future__ import annotations

from pathlib import Path

from llmworks.tracking.sync import offline_runs, read_offline_run

from conftest import local_corpus_overrides, run_stage, stage_overrides


def test_stage_run_records_config_and_metrics(tmp_path: Path, text_corpus: Path) -> None:
    result = run_stage(
        "prepare_corpus",
        *stage_overrides(None, tmp_path),
        *local_corpus_overrides(text_corpus),
        "experiment_name=trk",
    )
    assert result.returncode == 0, result.stderr
    runs = offline_runs(tmp_path)
    assert len(runs) == 1
    run = read_offline_run(runs[0])
    assert (
        run["state"] == "finished" and run["name"] == "trk-corpus" and run["job_type"] == "corpus"
    )
    assert run["config"]["corpus"]["name"] == "local"
    assert run["config"]["experiment_name"] == "trk"
    assert run["config"]["corpus"]["data_files"] == str(text_corpus)
    assert run["summary"]["corpus/total/documents"] == 72


def test_broken_wandb_does_not_stop_a_stage(tmp_path: Path, text_corpus: Path) -> None:
    # An unwritable W&B directory makes wandb.init fail; the stage must still succeed.
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    result = run_stage(
        "prepare_corpus",
        *stage_overrides(None, tmp_path),
        *local_corpus_overrides(text_corpus),
        f"logger.dir={blocker / 'sub'}",
    )
    assert result.returncode == 0, result.stderr
    assert "W&B unavailable" in result.stdout + result.stderr
    assert (tmp_path / "data" / "corpus" / "corpus_stats.json").is_file()
