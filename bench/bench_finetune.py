"""Fine-tuning BERT: our finetune stage against Hugging Face ``Trainer`` (the ``run_glue.py``
recipe) on the same task, the same exported checkpoint and the same wall time, in one run.

    dvc repro prepare_task train@bert     # the task and the pretrained BERT (with models/bert/hf)
    python bench/bench_finetune.py --workspace . --rounds 2

- ours: ``pipelines/finetune.py finetune.models=[bert] finetune.modes=[finetuned]`` (the
  stage as ``dvc repro`` runs it, into a scratch directory); its wall time from start to
  exit is the budget, its test accuracy the score;
- theirs: ``AutoModelForSequenceClassification.from_pretrained(models/bert/hf)`` and its
  tokenizer, the same splits, max length, batch size, learning rate, warmup, weight decay
  and cosine schedule, in a fresh process (imports counted, as ours), evaluated per epoch
  on validation with the best epoch kept (``load_best_model_at_end``, as our stage keeps its
  best validation loss), then scored on test; twice: with our epochs (the same steps), and
  with as many epochs as fill our wall time (the schedule spans them; ``Trainer.train()``
  is stopped if the budget runs out). Ours runs first in each round (its wall time is the
  budget); seeds differ per round, the same for all three.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_gpt import machine  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]


def ours(ws: Path, out: Path, seed: int, extra: list[str]) -> dict:
    cmd = [
        sys.executable, str(REPO / "pipelines" / "finetune.py"), f"paths.data={ws / 'data'}",
        f"paths.models={out / 'models'}", f"paths.runs={out / 'runs'}",
        f"paths.metrics={out / 'metrics'}", f"hydra.run.dir={out / 'h'}", "logger=none",
        "finetune.models=[bert]", "finetune.modes=[finetuned]", "finetune.export=false",
        f"seed={seed}", *extra,
    ]  # fmt: skip
    # the classifier goes to paths.models/finetuned: the workspace's own stays untouched
    (out / "models").mkdir(parents=True)
    (out / "models" / "bert").symlink_to((ws / "models" / "bert").resolve())
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True)
    wall = time.perf_counter() - start
    got = json.loads((out / "metrics" / "finetune.json").read_text())["bert"]["finetuned"]
    return {"wall_s": wall, "accuracy": got["accuracy"], "macro_f1": got["macro_f1"],
            "steps": got["steps"]}  # fmt: skip


def theirs(ws: Path, out: Path, seed: int, budget: float, epochs: int, extra: list[str]) -> dict:
    """HF Trainer in a fresh process, as ours runs: its wall time counts its imports too."""
    cmd = [sys.executable, __file__, "--workspace", str(ws), "--hf-worker", str(out),
           "--seed", str(seed), "--budget", str(budget), "--epochs", str(epochs), *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall_s": wall}


def hf_worker(ws: Path, out: Path, seed: int, budget: float, epochs: int, extra: list[str]) -> dict:
    start = time.perf_counter()
    import datasets
    import numpy as np
    import torch
    from sklearn.metrics import f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from llmworks.config import compose_config

    cfg = compose_config(extra).finetune
    torch.manual_seed(seed)
    task = datasets.load_from_disk(str(ws / "data" / "task" / "dataset"))
    names = json.loads((ws / "data" / "task" / "labels.json").read_text())["names"]
    hf_dir = ws / "models" / "bert" / "hf"
    tok = AutoTokenizer.from_pretrained(hf_dir)
    pairs = "text_pair" in task["train"].column_names

    def encode(batch):
        second = batch["text_pair"] if pairs else None
        return tok(batch["text"], second, truncation=True, max_length=int(cfg.max_len))

    task = task.map(encode, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        hf_dir, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    # the encoder without dropout and the head with ours, as our classifier has them
    # (RoFormer's head would read hidden_dropout_prob, the encoder's)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout) and not name.startswith(("bert.", "roformer.")):
            module.p = float(cfg.dropout)

    class Budget(TrainerCallback):
        """Stops training when the wall-time budget is spent."""

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - start >= budget:
                control.should_training_stop = True
                control.should_evaluate = True

    def accuracy(pred):
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs,
        per_device_train_batch_size=int(cfg.batch_size), per_device_eval_batch_size=64,
        learning_rate=float(cfg.optim.lr), weight_decay=float(cfg.optim.weight_decay),
        adam_beta1=float(cfg.optim.betas[0]), adam_beta2=float(cfg.optim.betas[1]),
        adam_epsilon=float(cfg.optim.eps), warmup_steps=int(cfg.optim.warmup_steps),
        lr_scheduler_type="cosine", max_grad_norm=1.0, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False, logging_steps=10**6,
        report_to=[], dataloader_num_workers=0, use_cpu=True, seed=seed,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=targs, train_dataset=task["train"], eval_dataset=task["validation"],
        processing_class=tok, compute_metrics=accuracy, callbacks=[Budget()],
    )  # fmt: skip
    trainer.train()
    pred = trainer.predict(task["test"])
    predicted = pred.predictions.argmax(-1)
    return {
        "epochs": epochs,
        "accuracy": float((predicted == np.asarray(task["test"]["label"])).mean()),
        "macro_f1": float(f1_score(task["test"]["label"], predicted, average="macro")),
        "steps": int(trainer.state.global_step),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workspace", default=".", help="holds data/task and models/bert(/hf)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--hf-worker", help=argparse.SUPPRESS)  # one HF run in this process
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="finetune.* overrides for both")
    args = p.parse_args()
    ws = Path(args.workspace).resolve()
    if args.hf_worker:
        got = hf_worker(ws, Path(args.hf_worker), args.seed, args.budget, args.epochs,
                        args.overrides)  # fmt: skip
        print(json.dumps(got))
        return
    from llmworks.config import compose_config

    epochs = int(compose_config(args.overrides).finetune.train.max_epochs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            seed = 1337 + r
            mine = ours(ws, Path(tmp) / f"ours{r}", seed, args.overrides)
            budget = mine["wall_s"]
            same = theirs(ws, Path(tmp) / f"hf{r}", seed, budget, epochs, args.overrides)
            # the epochs that fill our wall time (its cosine schedule spans them)
            more = max(epochs, int(epochs * budget / same["wall_s"]))
            filled = theirs(ws, Path(tmp) / f"hfw{r}", seed, budget, more, args.overrides)
            rows.append({"round": r, "seed": seed, "ours": mine, "hf_same_epochs": same,
                         "hf_equal_wall": filled})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    keys = ("ours", "hf_same_epochs", "hf_equal_wall")
    acc = {k: statistics.mean(r[k]["accuracy"] for r in rows) for k in keys}
    print(json.dumps({
        "machine": machine(), "date": time.strftime("%Y-%m-%d"), "rounds": rows,
        "mean_accuracy": acc, "ratio_equal_wall": acc["ours"] / acc["hf_equal_wall"],
        "ratio_same_epochs": acc["ours"] / acc["hf_same_epochs"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
