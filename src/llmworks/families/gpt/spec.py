"""The gpt family's spec: what the shared training stage, evaluate stage and export
read from it (``llmworks.spec.Family``). Kept apart from ``__init__`` so that importing one
module of the family (its model, its Hugging Face mapping) does not import Lightning."""

from __future__ import annotations

from llmworks.families.gpt.hf import export
from llmworks.families.gpt.module import build
from llmworks.spec import HF_DIR, CardSpec, Family
from llmworks.training.callbacks import TOKENS_PER_S_PER_DEVICE
from llmworks.training.optim import LOGGED_LR

FAMILY = Family(
    name="gpt",
    title="GPT (causal LM)",
    build=build,
    monitor="val_loss",
    metrics=("val_loss", "val_ppl", "val_bpb", "val_word_ppl", "val_aux_loss"),
    plots={
        "train": {
            "train_loss": "train_loss",
            "lr": LOGGED_LR,
            "tokens_per_s_per_device": TOKENS_PER_S_PER_DEVICE,
        },
        "val": {"val_loss": "val_loss", "val_bpb": "val_bpb"},
    },
    divergence_hint="lower gpt.optim.lr or raise gpt.optim.warmup_steps",
    export=export,
    hf_dir=HF_DIR,
    card=CardSpec(
        pipeline_tag="text-generation",
        library="transformers",
        how_to_load=(
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("{path}")\n'
            'tokenizer = AutoTokenizer.from_pretrained("{path}")\n'
            'ids = tokenizer("The history of", return_tensors="pt")\n'
            "print(tokenizer.decode(model.generate(**ids, max_new_tokens=20)[0]))"
        ),
    ),
)
