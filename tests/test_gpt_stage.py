"""The train@gpt stage (``pipelines/train.py family=gpt``) and the generate entry point end to
end on tiny shards: artifacts, metrics, resume after a crash, and DDP on CPU (2 gloo
processes) against one process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ThroughputMonitor

from llmworks.config import compose_config
from llmworks.spec import family
from llmworks.training.optim import warmup_stable_decay
from llmworks.training.recipe import train

from conftest import preset, run_stage, stage_overrides, train_metrics


def train_gpt(cfg):
    return train(family("gpt"), cfg)


def overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return stage_overrides("gpt", out, "gpt=smoke", *extra, data=data)


@pytest.fixture(scope="module")
def trained(gpt_data, tmp_path_factory) -> Path:
    """One run of the train@gpt stage (smoke preset, offline W&B)."""
    out = tmp_path_factory.mktemp("gpt_stage")
    proc = run_stage("train", *overrides(gpt_data, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "stage.log").write_text(proc.stdout + proc.stderr)
    return out


def generate(gpt_data: Path, out: Path, checkpoint: Path) -> str:
    proc = run_stage(
        "generate",
        *overrides(gpt_data, out),
        "prompt=The quick",
        "temperature=0",
        "max_new_tokens=12",
        f"checkpoint={checkpoint}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_stage_prints_each_of_lightnings_lines_once(trained):
    """The recipe (and Lightning) load after the config is checked and logging is set up;
    Lightning's lines must still print once, not through its handler and ours."""
    printed = (trained / "stage.log").read_text()
    assert printed.count("GPU available:") == 1, printed[-3000:]
    assert "litlogger" not in printed


def test_stage_writes_the_model_its_export_and_one_checkpoint_set(trained):
    model_dir = trained / "models" / "gpt"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "hf/model.safetensors",
                 "hf/tokenizer.json"):  # fmt: skip
        assert (model_dir / name).is_file(), name
    ckpt_dir = trained / "runs" / "gpt" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((trained / "wandb").glob("offline-run-*"))) == 1


def test_the_export_explains_itself_with_a_model_card_whose_snippet_runs(trained):
    from huggingface_hub import ModelCard

    hf = trained / "models" / "gpt" / "hf"
    card = ModelCard.load(hf / "README.md")
    assert card.data.pipeline_tag == "text-generation" and card.data.library_name == "transformers"
    assert "| val_bpb |" in card.text and "tokenizer: bpe" in card.text
    snippet = card.text.split("```python")[1].split("```")[0]
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=hf, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("The history of"), proc.stderr[-2000:]


def test_stage_writes_metrics_and_training_curves(trained):
    metrics = train_metrics(trained, "gpt")
    for key in ("val_loss", "val_ppl", "val_bpb", "tokens_per_s"):
        assert metrics[key] > 0, key
    assert metrics["val_ppl"] == pytest.approx(math.exp(metrics["val_loss"]), rel=1e-4)
    assert metrics["steps"] == 10
    train_csv = (trained / "metrics" / "train" / "gpt_train.csv").read_text().splitlines()
    assert train_csv[0] == "step,train_loss,lr,tokens_per_s_per_device" and len(train_csv) == 11
    # the learning rate at every step, as the preset's schedule gives it (the default's
    # warmup-stable-decay: up over the warmup, flat, then down over the last 40%)
    optim = preset("gpt", "smoke", "optim")
    assert optim["schedule"] == "wsd"
    expected = [
        optim["lr"]
        * warmup_stable_decay(
            step, optim["warmup_steps"], 10, optim["min_lr_ratio"], optim["cooldown"]
        )
        for step in range(10)
    ]
    assert [float(row.split(",")[2]) for row in train_csv[1:]] == pytest.approx(expected)
    assert len(set(expected)) < len(expected) - 2  # a plateau: not a cosine


def test_generate_streams_from_the_model_and_from_its_checkpoint_alike(gpt_data, trained):
    text = generate(gpt_data, trained, trained / "models" / "gpt")
    assert text.startswith("The quick") and len(text.strip()) > len("The quick")
    last = trained / "runs" / "gpt" / "checkpoints" / "last.ckpt"  # weights at step 10 too
    assert generate(gpt_data, trained, last) == text


def test_missing_shards_is_a_one_line_error(tmp_path):
    proc = run_stage("train", *overrides(tmp_path / "nothing", tmp_path))
    assert proc.returncode == 2
    assert "llmworks: error:" in proc.stderr and "Traceback" not in proc.stderr


class Crash(RuntimeError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_rerun_after_crash_resumes_from_last(gpt_data, tmp_path, monkeypatch, optimizer):
    """Muon's momentum and AdamW's moments both come back from the checkpoint."""

    def run(out: Path):
        return train_gpt(
            compose_config(
                overrides(
                    gpt_data, out, "logger=none", "gpt.export=false", f"gpt.optim.name={optimizer}"
                )
            )
        )

    reference = run(tmp_path / "straight")

    original = ThroughputMonitor.on_train_batch_end

    def crash_at_step_7(self, trainer, *args):
        original(self, trainer, *args)
        if trainer.global_step == 7:
            raise Crash("simulated crash")

    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", crash_at_step_7)
    with pytest.raises(Crash):
        run(tmp_path / "crashed")
    ckpt_dir = tmp_path / "crashed" / "runs" / "gpt" / "checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file()  # written by the validation at step 5
    assert not (tmp_path / "crashed" / "metrics" / "train" / "gpt.json").exists()
    monkeypatch.setattr(ThroughputMonitor, "on_train_batch_end", original)

    resumed = run(tmp_path / "crashed")
    assert resumed["steps"] == reference["steps"] == 10
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"] == 10
    # the resumed run continues the interrupted epoch's window order: same batches, same result
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)
    # and its curve goes back to the first step: the sessions' logs are merged
    steps = [
        int(r.split(",")[0])
        for r in (tmp_path / "crashed/metrics/train/gpt_train.csv").read_text().splitlines()[1:]
    ]
    assert steps == list(range(10))
    lr = [
        r.split(",")[2]
        for r in (tmp_path / "crashed/metrics/train/gpt_train.csv").read_text().splitlines()
    ]
    assert lr[0] == "lr" and all(float(v) > 0 for v in lr[1:])  # Lightning's LearningRateMonitor


@pytest.mark.slow
def test_ddp_cpu_matches_single_process_with_one_run_and_one_checkpoint_set(gpt_data, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = [
        "gpt.export=false",
        "gpt.train.max_steps=8",
        "gpt.train.val_check_interval=4",
    ]
    p1 = run_stage(
        "train",
        *overrides(gpt_data, single, *common, "gpt.data.batch_size=8"),
    )
    assert p1.returncode == 0, p1.stderr[-3000:]
    # same global batch: 2 processes x 4 windows; rank r takes every 2nd window of the same
    # permutation, so each step sees the same 8 windows as the single process
    p2 = run_stage(
        "train",
        *overrides(gpt_data, ddp, *common, "gpt.data.batch_size=4"),
        "trainer=ddp_cpu",
        timeout=300,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert p2.returncode == 0, p2.stderr[-3000:]
    m1 = train_metrics(single, "gpt")
    m2 = train_metrics(ddp, "gpt")
    assert m2["world_size"] == 2 and m2["steps"] == m1["steps"] == 8
    assert m2["val_loss"] == pytest.approx(m1["val_loss"], abs=1e-4)
    assert len(list((ddp / "wandb").glob("offline-run-*"))) == 1
    assert sorted(os.listdir(ddp / "runs" / "gpt" / "checkpoints")) == ["best.ckpt", "last.ckpt"]


def test_moe_variant_trains_logs_balance_loss_and_exports_mixtral(gpt_data, tmp_path):
    moe = [
        "gpt.model.mlp=moe",
        "gpt.model.pos=rope",
        "gpt.model.norm=rmsnorm",
        "gpt.model.bias=false",
        "gpt.model.qk_norm=false",  # Mixtral has no q/k norm
        "gpt.model.n_expert=4",
        "gpt.model.n_kv_head=1",
        "gpt.train.max_steps=4",
        "gpt.train.val_check_interval=2",
    ]
    metrics = train_gpt(compose_config(overrides(gpt_data, tmp_path, "logger=none", *moe)))
    assert metrics["val_aux_loss"] > 0 and metrics["steps"] == 4
    hf_config = json.loads((tmp_path / "models" / "gpt" / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["MixtralForCausalLM"]
    logs = list((tmp_path / "runs" / "gpt" / "csv").glob("*/metrics.csv"))
    header = logs[0].read_text().splitlines()[0]
    assert "train_aux_loss" in header and "val_aux_loss" in header
