"""The train_gpt and generate entry points end to end on tiny shards: artifacts, metrics,
resume after a crash, and DDP on CPU (2 gloo processes) against one process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from gpt_helpers import write_shards

from llmworks.config import compose_config
from llmworks.training import trainer as fit_module
from llmworks.training.gpt import train_gpt

from conftest import run_stage


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gptdata")
    write_shards(root / "data")
    return root / "data"


def overrides(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "gpt=smoke",
        f"paths.data={data_root}",
        f"paths.models={out / 'models'}",
        f"paths.metrics={out / 'metrics'}",
        f"logger.dir={out}",
        *extra,
    ]


def test_stage_writes_artifacts_and_generate_streams(data_root, tmp_path):
    proc = run_stage(
        "train_gpt", *overrides(data_root, tmp_path), f"hydra.run.dir={tmp_path / 'h'}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = tmp_path / "models" / "gpt"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "hf/model.safetensors",
        "hf/tokenizer.json",
    ):
        assert (model_dir / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics" / "gpt.json").read_text())
    for key in ("val_loss", "val_ppl", "val_bpb", "tokens_per_s"):
        assert metrics[key] > 0, key
    assert metrics["val_ppl"] == pytest.approx(
        torch.tensor(metrics["val_loss"]).exp().item(), rel=1e-4
    )
    assert metrics["steps"] == 10
    train_csv = (tmp_path / "metrics" / "gpt_train.csv").read_text().splitlines()
    assert train_csv[0] == "step,train_loss,lr,tokens_per_s" and len(train_csv) == 11
    assert all("," not in row.split(",", 2)[2][:1] for row in train_csv[1:])  # lr present
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1

    gen = run_stage(
        "generate",
        *overrides(data_root, tmp_path),
        "prompt=The quick",
        "temperature=0",
        "max_new_tokens=12",
        f"gpt.checkpoint={model_dir}",
        f"hydra.run.dir={tmp_path / 'h2'}",
    )
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert gen.stdout.startswith("The quick") and len(gen.stdout.strip()) > len("The quick")
    # the same model from its Lightning checkpoint gives the same greedy text
    gen2 = run_stage(
        "generate",
        *overrides(data_root, tmp_path),
        "prompt=The quick",
        "temperature=0",
        "max_new_tokens=12",
        f"gpt.checkpoint={model_dir / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'h3'}",
    )
    assert gen2.stdout == gen.stdout


def test_missing_shards_is_a_one_line_error(tmp_path):
    proc = run_stage(
        "train_gpt", *overrides(tmp_path / "nothing", tmp_path), f"hydra.run.dir={tmp_path / 'h'}"
    )
    assert proc.returncode == 2
    assert "llmworks: error:" in proc.stderr and "Traceback" not in proc.stderr


class Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_rerun_after_crash_resumes_from_last(data_root, tmp_path, monkeypatch):
    def run(out: Path):
        return train_gpt(
            compose_config(overrides(data_root, out, "logger=none", "gpt.train.export_hf=false"))
        )

    reference = run(tmp_path / "straight")

    original = fit_module.Throughput.on_train_batch_end

    def crash_at_step_7(self, trainer, *args):
        original(self, trainer, *args)
        if trainer.global_step == 7:
            raise Crash("simulated crash")

    monkeypatch.setattr(fit_module.Throughput, "on_train_batch_end", crash_at_step_7)
    with pytest.raises(Crash):
        run(tmp_path / "crashed")
    ckpt_dir = tmp_path / "crashed" / "models" / "gpt" / "checkpoints"
    assert (ckpt_dir / "last.ckpt").is_file()  # written by the validation at step 5
    assert not (tmp_path / "crashed" / "metrics" / "gpt.json").exists()
    monkeypatch.setattr(fit_module.Throughput, "on_train_batch_end", original)

    resumed = run(tmp_path / "crashed")
    assert resumed["steps"] == reference["steps"] == 10
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=False)["global_step"] == 10
    # the resumed run continues the interrupted epoch's window order: same batches, same result
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-5)


@pytest.mark.slow
def test_ddp_cpu_matches_single_process_with_one_run_and_one_checkpoint_set(data_root, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    common = [
        "gpt.train.export_hf=false",
        "gpt.train.max_steps=8",
        "gpt.train.val_check_interval=4",
    ]
    p1 = run_stage(
        "train_gpt",
        *overrides(data_root, single, *common, "gpt.data.batch_size=8"),
        f"hydra.run.dir={single / 'h'}",
    )
    assert p1.returncode == 0, p1.stderr[-3000:]
    # same global batch: 2 processes x 4 windows; rank r takes every 2nd window of the same
    # permutation, so each step sees the same 8 windows as the single process
    p2 = run_stage(
        "train_gpt",
        *overrides(data_root, ddp, *common, "gpt.data.batch_size=4"),
        "trainer=ddp_cpu",
        f"hydra.run.dir={ddp / 'h'}",
        timeout=300,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert p2.returncode == 0, p2.stderr[-3000:]
    m1 = json.loads((single / "metrics" / "gpt.json").read_text())
    m2 = json.loads((ddp / "metrics" / "gpt.json").read_text())
    assert m2["world_size"] == 2 and m2["steps"] == m1["steps"] == 8
    assert m2["val_loss"] == pytest.approx(m1["val_loss"], abs=1e-4)
    assert len(list((ddp / "wandb").glob("offline-run-*"))) == 1
    assert sorted(os.listdir(ddp / "models" / "gpt" / "checkpoints")) == ["best.ckpt", "last.ckpt"]


def test_moe_variant_trains_logs_balance_loss_and_exports_mixtral(data_root, tmp_path):
    moe = [
        "gpt.model.mlp=moe",
        "gpt.model.pos=rope",
        "gpt.model.norm=rmsnorm",
        "gpt.model.bias=false",
        "gpt.model.n_expert=4",
        "gpt.model.n_kv_head=1",
        "gpt.train.max_steps=4",
        "gpt.train.val_check_interval=2",
    ]
    metrics = train_gpt(compose_config(overrides(data_root, tmp_path, "logger=none", *moe)))
    assert metrics["val_aux_loss"] > 0 and metrics["steps"] == 4
    hf_config = json.loads((tmp_path / "models" / "gpt" / "hf" / "config.json").read_text())
    assert hf_config["architectures"] == ["MixtralForCausalLM"]
    header = (tmp_path / "models" / "gpt" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train_aux_loss" in header and "val_aux_loss" in header
