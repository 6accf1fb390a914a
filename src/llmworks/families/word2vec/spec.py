"""The word2vec family's spec: what the shared training stage, evaluate stage and export
read from it (``llmworks.spec.Family``). Kept apart from ``__init__`` so that importing one
module of the family (its model, its Hugging Face mapping) does not import Lightning."""

from __future__ import annotations

from llmworks.families.word2vec.module import LOGGED_LR, build
from llmworks.families.word2vec.vectors import export
from llmworks.spec import CardSpec, Family
from llmworks.training.callbacks import TOKENS_PER_S_PER_DEVICE

FAMILY = Family(
    name="word2vec",
    title="Word2Vec",
    build=build,
    monitor="val_loss",
    metrics=("val_loss",),
    plots={
        "train": {
            "train_loss": "train_loss",
            "lr": LOGGED_LR,
            "words_per_s_per_device": TOKENS_PER_S_PER_DEVICE,
        },
        "val": {"val_loss": "val_loss"},
    },
    divergence_hint="lower word2vec.optim.alpha (the starting learning rate)",
    export=export,
    card=CardSpec(
        pipeline_tag="feature-extraction",
        library="gensim",
        how_to_load=(
            "from gensim.models import KeyedVectors\n\n"
            'vectors = KeyedVectors.load_word2vec_format("{path}/vectors.bin", binary=True)\n'
            'print(vectors.most_similar("king"))'
        ),
    ),
)
