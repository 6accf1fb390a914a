"""The GPU paths that a CPU can stand in for, through the real stages: bf16 autocast with
gradient clipping and AdamW (the path that crashed on an H100 at the first step), and
torch.compile of the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_stage, stage_overrides, train_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(prepared_data: Path) -> Path:
    return prepared_data


def train(family: str, data: Path, out: Path, *extra: str) -> dict:
    proc = run_stage(
        "train", *stage_overrides(family, out, "experiment=smoke", "logger=none", *extra, data=data)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return train_metrics(out, family)


@pytest.mark.parametrize(("family", "monitor"), [("gpt", "val_loss"), ("bert", "val_mlm_loss")])
def test_bf16_mixed_with_clipping_trains_like_float32(family, monitor, data, tmp_path) -> None:
    fp32 = train(family, data, tmp_path / "fp32")
    bf16 = train(family, data, tmp_path / "bf16", "trainer.precision=bf16-mixed")
    assert bf16["steps"] == fp32["steps"]
    # bf16 keeps 8 bits of mantissa: the losses agree to about 1e-2 of a nat
    assert bf16[monitor] == pytest.approx(fp32[monitor], abs=2e-2)


def test_torch_compile_gives_the_same_model(data, tmp_path) -> None:
    eager = train("gpt", data, tmp_path / "eager")
    compiled = train("gpt", data, tmp_path / "compiled", "gpt.compile=true")
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], abs=1e-4)
