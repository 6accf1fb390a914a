"""The train_bert and fill_mask entry points end to end on tiny shards: artifacts, metrics,
an HF export that agrees with the saved model, and one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from test_bert_data import bert_shards  # noqa: F401  (fixture: tiny tokenizer + shards)

from llmworks.config import compose_config
from llmworks.models.bert import Bert

from conftest import run_stage

FAST = {"WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data_root(bert_shards, tmp_path_factory) -> Path:  # noqa: F811
    """``paths.data`` laid out as the pipeline does: tokenizers/wordpiece + tokens/wordpiece."""
    tok_json, shards_dir = bert_shards
    root = tmp_path_factory.mktemp("bert_stage") / "data"
    (root / "tokenizers" / "wordpiece").mkdir(parents=True)
    shutil.copyfile(tok_json, root / "tokenizers" / "wordpiece" / "tokenizer.json")
    shutil.copytree(shards_dir, root / "tokens" / "wordpiece")
    return root


def overrides(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "bert=smoke",
        f"paths.data={data_root}",
        f"paths.models={out / 'models'}",
        f"paths.runs={out / 'runs'}",
        f"paths.metrics={out / 'metrics'}",
        f"logger.dir={out}",
        *extra,
    ]


def test_presets_compose() -> None:
    base = compose_config(["bert=bert_base"]).bert
    assert (base.model.n_layer, base.model.d_model, base.model.n_head) == (12, 768, 12)
    assert base.data.mask_rate == 0.15 and base.tokenizer == "wordpiece"
    smoke = compose_config(["bert=smoke"]).bert
    assert smoke.train.max_steps < 10 and smoke.data.packing == "docs"


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the train_bert entry point (smoke preset)."""
    out = tmp_path_factory.mktemp("bert_stage_run")
    proc = run_stage(
        "train_bert", *overrides(data_root, out), f"hydra.run.dir={out / 'h'}", env=FAST
    )
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
    metrics = json.loads((trained / "metrics" / "bert.json").read_text())
    assert metrics["steps"] == 6
    assert 0 < metrics["val_mlm_loss"] < 2 * math.log(300)  # 300 = the tiny vocabulary
    assert 0 <= metrics["val_mlm_acc"] <= 1
    assert metrics["val_ppl"] == pytest.approx(math.exp(metrics["val_mlm_loss"]), rel=1e-4)
    train_csv = (trained / "metrics" / "bert_train.csv").read_text().splitlines()
    assert train_csv[0] == "step,train_loss,lr,tokens_per_s_per_device" and len(train_csv) == 7
    val_csv = (trained / "metrics" / "bert_val.csv").read_text().splitlines()
    assert val_csv[0] == "step,val_mlm_loss,val_mlm_acc,val_ppl" and len(val_csv) >= 3


def test_fill_mask_agrees_with_the_hf_export(data_root: Path, trained: Path) -> None:
    from transformers import pipeline

    fill = run_stage(
        "fill_mask",
        *overrides(data_root, trained),
        "text=the cat sat on the [MASK].",
        "top_k=3",
        f"hydra.run.dir={trained / 'h2'}",
        env=FAST,
    )
    assert fill.returncode == 0, fill.stderr[-3000:]
    lines = fill.stdout.strip().splitlines()
    assert lines[0] == "the cat sat on the [MASK]." and len(lines) == 5
    top_token, top_p = lines[2].split()[1], float(lines[2].split()[0].rstrip("%")) / 100
    hf_dir = str(trained / "models" / "bert" / "hf")
    hf = pipeline("fill-mask", model=hf_dir, top_k=3)("the cat sat on the [MASK].")
    assert hf[0]["token_str"].replace(" ", "") == top_token.replace("##", "")
    assert hf[0]["score"] == pytest.approx(top_p, abs=1e-4)


def test_a_rerun_with_another_schedule_trains_afresh(
    data_root: Path, trained: Path, tmp_path: Path
) -> None:
    """Another config is another run: it does not continue the finished one (whose result
    would then depend on what the workspace held)."""
    trained = Path(shutil.copytree(trained, tmp_path / "workspace"))  # the others' stays as is
    again = run_stage(
        "train_bert",
        *overrides(data_root, trained),
        "bert.train.max_steps=8",
        f"hydra.run.dir={trained / 'h3'}",
        env=FAST,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "training afresh" in said and "resuming" not in said
    assert json.loads((trained / "metrics" / "bert.json").read_text())["steps"] == 8
    # checkpoints are written at validations (every 3 steps): the new run's last is at 6
    last = trained / "runs" / "bert" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert len((trained / "metrics" / "bert_train.csv").read_text().splitlines()) == 9


def test_an_architecture_without_a_hf_twin_is_trained_and_saved_without_export(
    data_root: Path, tmp_path: Path
) -> None:
    """Pre-LN with rotary positions exists in no transformers class: the stage says so,
    keeps the trained model and leaves out ``hf/`` rather than failing after training."""
    proc = run_stage(
        "train_bert",
        *overrides(data_root, tmp_path),
        "bert.model.norm=pre",
        f"hydra.run.dir={tmp_path / 'h'}",
        env=FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no Hugging Face counterpart" in proc.stdout + proc.stderr
    model_dir = tmp_path / "models" / "bert"
    assert Bert.load(model_dir).config.norm == "pre"
    assert not (model_dir / "hf").exists()


def test_user_errors_are_one_line(data_root: Path, tmp_path: Path) -> None:
    missing = run_stage(
        "train_bert",
        *overrides(tmp_path / "nothing", tmp_path),
        f"hydra.run.dir={tmp_path / 'h'}",
        env=FAST,
    )
    assert missing.returncode == 2 and "llmworks: error:" in missing.stderr
    assert "Traceback" not in missing.stderr
    too_long = run_stage(
        "train_bert",
        *overrides(data_root, tmp_path),
        "bert.data.max_seq_len=100",
        f"hydra.run.dir={tmp_path / 'h2'}",
        env=FAST,
    )
    assert too_long.returncode == 2 and "max_seq_len" in too_long.stderr
    bad_shape = run_stage(
        "train_bert",
        *overrides(data_root, tmp_path),
        "bert.model.n_head=3",
        f"hydra.run.dir={tmp_path / 'h4'}",
        env=FAST,
    )
    assert bad_shape.returncode == 2 and "bert.model" in bad_shape.stderr
    no_model = run_stage(
        "fill_mask",
        *overrides(data_root, tmp_path),
        "text=a [MASK] b",
        f"hydra.run.dir={tmp_path / 'h3'}",
        env=FAST,
    )
    assert no_model.returncode == 2 and "train_bert" in no_model.stderr


@pytest.mark.slow
def test_ddp_cpu_validation_metrics_cover_every_sequence_once(
    data_root: Path, tmp_path: Path
) -> None:
    """2 gloo processes: one set of artifacts, and the reported validation metrics equal a
    single-process pass over the same seed-masked validation batches with the saved weights."""
    from llmworks.config import typed
    from llmworks.data.mlm import IGNORE_INDEX, MLMData, MLMDataConfig

    # 3 batches of 5: an odd number of validation sequences, which DDP's sampler would pad
    odd = ("bert.data.batch_size=5", "bert.data.max_val_batches=3")
    proc = run_stage(
        "train_bert",
        *overrides(data_root, tmp_path, *odd),
        "trainer=ddp_cpu",
        f"hydra.run.dir={tmp_path / 'h'}",
        env=FAST,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics" / "bert.json").read_text())
    assert metrics["world_size"] == 2
    model_dir = tmp_path / "models" / "bert"
    assert sorted(p.name for p in (tmp_path / "runs" / "bert" / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]
    cfg = compose_config(overrides(data_root, tmp_path, *odd)).bert
    data_cfg = typed(MLMDataConfig, cfg.data, "bert.data")
    data = MLMData(data_root / "tokens" / "wordpiece", model_dir / "tokenizer.json", data_cfg, 0)
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
