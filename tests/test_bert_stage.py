"""The train@bert stage (``pipelines/train.py family=bert``) and the fill_mask entry point
end to end on tiny shards: artifacts, metrics, an HF export that agrees with the saved model,
and one-line errors."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from llmworks.config import compose_config
from llmworks.families.bert.model import Bert

from conftest import FAST, run_stage, stage_overrides, train_metrics


def overrides(data: Path, out: Path, *extra: str) -> list[str]:
    return stage_overrides("bert", out, "bert=smoke", *extra, data=data)


def test_presets_compose() -> None:
    base = compose_config(["bert=bert_base"]).bert
    assert (base.model.n_layer, base.model.d_model, base.model.n_head) == (12, 768, 12)
    assert base.data.mask_rate == 0.15 and base.tokenizer == "wordpiece"
    smoke = compose_config(["bert=smoke"]).bert
    assert smoke.train.max_steps < 10 and smoke.data.packing == "docs"


@pytest.fixture(scope="module")
def trained(bert_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the train@bert stage (smoke preset)."""
    out = tmp_path_factory.mktemp("bert_stage_run")
    proc = run_stage("train", *overrides(bert_data, out), env=FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_stage_writes_the_model_its_export_and_one_checkpoint_set(trained: Path) -> None:
    model_dir = trained / "models" / "bert"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "hf/model.safetensors",
                 "hf/config.json", "hf/tokenizer.json"):  # fmt: skip
        assert (model_dir / name).is_file(), name
    ckpt_dir = trained / "runs" / "bert" / "checkpoints"
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    model = Bert.load(model_dir)
    assert model.config.vocab_size == 300 and model.config.n_layer == 2


def test_the_export_explains_itself_with_a_model_card_whose_snippet_runs(trained: Path) -> None:
    import subprocess
    import sys

    from huggingface_hub import ModelCard

    hf = trained / "models" / "bert" / "hf"
    card = ModelCard.load(hf / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and "| val_mlm_acc |" in card.text
    snippet = card.text.split("```python")[1].split("```")[0]
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=hf, capture_output=True, text=True)
    assert proc.returncode == 0 and "token_str" in proc.stdout, proc.stderr[-2000:]


def test_stage_writes_metrics_and_training_curves(trained: Path) -> None:
    metrics = train_metrics(trained, "bert")
    assert metrics["steps"] == 6
    assert 0 < metrics["val_mlm_loss"] < 2 * math.log(300)  # 300 = the tiny vocabulary
    assert 0 <= metrics["val_mlm_acc"] <= 1
    assert metrics["val_ppl"] == pytest.approx(math.exp(metrics["val_mlm_loss"]), rel=1e-4)
    train_csv = (trained / "metrics" / "train" / "bert_train.csv").read_text().splitlines()
    assert train_csv[0] == "step,train_loss,lr,tokens_per_s_per_device" and len(train_csv) == 7
    val_csv = (trained / "metrics" / "train" / "bert_val.csv").read_text().splitlines()
    assert val_csv[0] == "step,val_mlm_loss,val_mlm_acc,val_ppl" and len(val_csv) >= 3


def test_fill_mask_agrees_with_the_hf_export(bert_data: Path, trained: Path) -> None:
    from transformers import pipeline

    fill = run_stage(
        "fill_mask",
        *overrides(bert_data, trained),
        "text=the cat sat on the [MASK].",
        "top_k=3",
        env=FAST,
    )
    assert fill.returncode == 0, fill.stderr[-3000:]
    lines = fill.stdout.strip().splitlines()
    assert lines[0] == "the cat sat on the [MASK]." and len(lines) == 5
    top_token, top_p = lines[2].split()[1], float(lines[2].split()[0].rstrip("%")) / 100
    hf_dir = str(trained / "models" / "bert" / "hf")
    hf = pipeline("fill-mask", model=hf_dir, top_k=3)("the cat sat on the [MASK].")
    # (a lone continuation piece reads "##t" from either side: compare the pieces)
    assert hf[0]["token_str"].replace(" ", "").removeprefix("##") == top_token.removeprefix("##")
    assert hf[0]["score"] == pytest.approx(top_p, abs=1e-4)


def test_a_rerun_with_another_schedule_trains_afresh(
    bert_data: Path, trained: Path, tmp_path: Path
) -> None:
    """Another config is another run: it does not continue the finished one (whose result
    would then depend on what the workspace held)."""
    trained = Path(shutil.copytree(trained, tmp_path / "workspace"))  # the others' stays as is
    again = run_stage(
        "train",
        *overrides(bert_data, trained),
        "bert.train.max_steps=8",
        env=FAST,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "training afresh" in said and "resuming" not in said
    assert train_metrics(trained, "bert")["steps"] == 8
    # checkpoints are written at validations (every 3 steps): the new run's last is at 6
    last = trained / "runs" / "bert" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert len((trained / "metrics" / "train" / "bert_train.csv").read_text().splitlines()) == 9


def test_user_errors_are_one_line(bert_data: Path, tmp_path: Path) -> None:
    missing = run_stage(
        "train",
        *overrides(tmp_path / "nothing", tmp_path),
        env=FAST,
    )
    assert missing.returncode == 2 and "llmworks: error:" in missing.stderr
    assert "Traceback" not in missing.stderr
    too_long = run_stage(
        "train",
        *overrides(bert_data, tmp_path),
        "bert.data.max_seq_len=100",
        env=FAST,
    )
    assert too_long.returncode == 2 and "max_seq_len" in too_long.stderr
    bad_shape = run_stage(
        "train",
        *overrides(bert_data, tmp_path),
        "bert.model.n_head=3",
        env=FAST,
    )
    assert bad_shape.returncode == 2 and "bert.model" in bad_shape.stderr
    no_model = run_stage(
        "fill_mask",
        *overrides(bert_data, tmp_path),
        "text=a [MASK] b",
        env=FAST,
    )
    assert no_model.returncode == 2 and "train@bert" in no_model.stderr


@pytest.mark.slow
def test_ddp_cpu_validation_metrics_cover_every_sequence_once(
    bert_data: Path, tmp_path: Path
) -> None:
    """2 gloo processes: one set of artifacts, and the reported validation metrics equal a
    single-process pass over the same seed-masked validation batches with the saved weights."""
    from llmworks.config import typed
    from llmworks.families.bert.data import IGNORE_INDEX, MLMData
    from llmworks.families.bert.settings import MLMDataConfig

    # 3 batches of 5: an odd number of validation sequences, which DDP's sampler would pad
    odd = ("bert.data.batch_size=5", "bert.data.max_val_batches=3")
    proc = run_stage(
        "train",
        *overrides(bert_data, tmp_path, *odd),
        "trainer=ddp_cpu",
        env=FAST,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = train_metrics(tmp_path, "bert")
    assert metrics["world_size"] == 2
    model_dir = tmp_path / "models" / "bert"
    assert sorted(p.name for p in (tmp_path / "runs" / "bert" / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]
    cfg = compose_config(overrides(bert_data, tmp_path, *odd)).bert
    data_cfg = typed(MLMDataConfig, cfg.data, "bert.data")
    data = MLMData(bert_data / "tokens" / "wordpiece", model_dir / "tokenizer.json", data_cfg, 0)
    model = Bert.load(model_dir)
    loss_sum = correct = count = 0.0
    with torch.no_grad():
        for batch in data.val_dataloader():
            logits, loss = model(
                batch["input_ids"], batch["attention_mask"], labels=batch["labels"]
            )
            targets = batch["labels"][batch["labels"] != IGNORE_INDEX]
            loss_sum += float(loss) * targets.numel()
            correct += float((logits.argmax(-1) == targets).sum())
            count += targets.numel()
    assert metrics["val_mlm_loss"] == pytest.approx(loss_sum / count, abs=1e-4)
    assert metrics["val_mlm_acc"] == pytest.approx(correct / count, abs=1e-6)
