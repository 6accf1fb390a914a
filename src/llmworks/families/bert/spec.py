"""The bert family's spec: what the shared training stage, evaluate stage and export
read from it (``llmworks.spec.Family``). Kept apart from ``__init__`` so that importing one
module of the family (its model, its Hugging Face mapping) does not import Lightning."""

from __future__ import annotations

from llmworks.families.bert.hf import export
from llmworks.families.bert.module import build
from llmworks.spec import HF_DIR, CardSpec, Family
from llmworks.training.callbacks import TOKENS_PER_S_PER_DEVICE
from llmworks.training.optim import LOGGED_LR

FAMILY = Family(
    name="bert",
    title="BERT (masked LM)",
    build=build,
    monitor="val_mlm_loss",
    metrics=("val_mlm_loss", "val_mlm_acc", "val_ppl"),
    plots={
        "train": {
            "train_loss": "train_loss",
            "lr": LOGGED_LR,
            "tokens_per_s_per_device": TOKENS_PER_S_PER_DEVICE,
        },
        "val": {"val_mlm_loss": "val_mlm_loss", "val_mlm_acc": "val_mlm_acc", "val_ppl": "val_ppl"},
    },
    divergence_hint="lower bert.optim.lr or raise bert.optim.warmup_steps",
    export=export,
    hf_dir=HF_DIR,
    card=CardSpec(
        pipeline_tag="fill-mask",
        library="transformers",
        how_to_load=(
            "from transformers import pipeline\n\n"
            'fill = pipeline("fill-mask", model="{path}")\n'
            'print(fill("The capital of France is [MASK]."))'
        ),
    ),
)
