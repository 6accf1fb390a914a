"""The word2vec family's config sections as typed settings, read without Lightning: the
training stage types them before it loads Lightning, so a bad value (a dimension of 0) fails
in about two seconds instead of seven, and ``module.build`` trains from the same objects."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from llmworks.config import typed
from llmworks.data.shards import open_shards
from llmworks.domains import at_least, positive
from llmworks.families.word2vec.model import Word2VecConfig
from llmworks.paths import Paths

# no transformer blocks (two embedding tables updated in place): trainer=fsdp has nothing
# to shard, and the preflight refuses it before Lightning loads
SHARDABLE = False


@dataclass(frozen=True)
class Word2VecDataConfig:
    """The ``word2vec.data`` section."""

    window: int  # maximum; each position draws its reduced window in [1, window]
    sample: float  # subsampling threshold (gensim's formula); 0 disables
    batch_words: int  # kept corpus words per Lightning batch ...
    step_words: int  # ... cut into SGD steps of this many
    val_words: int  # validation: the first words of the validation split

    def __post_init__(self) -> None:
        at_least(1, window=self.window, batch_words=self.batch_words,
                 step_words=self.step_words, val_words=self.val_words)  # fmt: skip
        at_least(0, sample=self.sample)


@dataclass(frozen=True)
class Word2VecOptimConfig:
    """The ``word2vec.optim`` section: SGD with a linearly decaying learning rate."""

    alpha: float
    min_alpha: float

    def __post_init__(self) -> None:
        positive(alpha=self.alpha)
        at_least(0, min_alpha=self.min_alpha)


@dataclass(frozen=True)
class Word2VecSettings:
    """``cfg.word2vec`` typed; ``model`` lacks only ``vocab_size`` (the corpus's, set by
    ``build``)."""

    model: Word2VecConfig
    data: Word2VecDataConfig
    optim: Word2VecOptimConfig


# It reads the corpus, not token shards, so families.word2vec.data_section names its own
# section: train@word2vec does not rerun when the shard readers' `data` changes.
DATA_SECTION = "word2vec"


def settings(cfg: DictConfig) -> Word2VecSettings:
    w = cfg.word2vec
    return Word2VecSettings(
        typed(Word2VecConfig, w.model, "word2vec.model", vocab_size=None),
        typed(Word2VecDataConfig, w.data, "word2vec.data"),
        typed(Word2VecOptimConfig, w.optim, "word2vec.optim"),
    )


def check_inputs(cfg: DictConfig, paths: Paths) -> None:
    """What ``build`` opens first, checked before Lightning loads: the prepared corpus, or,
    with ``word2vec.tokenizer``, that tokenizer and its token shards."""
    if cfg.word2vec.tokenizer:
        tokenizer = str(cfg.word2vec.tokenizer)
        open_shards(paths.tokens(tokenizer), paths.trained_tokenizer(tokenizer))
    else:
        paths.prepared_corpus()
