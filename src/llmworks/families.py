"""The model families of the pipeline: the one list that the evaluate stage, the report, the
attention maps and the embedders iterate over. Order is the order of the report's story.

A family is a ``llmworks.training.recipe.Family`` (its builders, monitored metric, metric
names, plot series, export and evaluation); see "Adding a model family" in the README.
"""

from __future__ import annotations

from llmworks.training.bert import BERT_FAMILY
from llmworks.training.gpt import GPT_FAMILY
from llmworks.training.recipe import Family
from llmworks.training.word2vec import WORD2VEC_FAMILY

FAMILIES: tuple[Family, ...] = (WORD2VEC_FAMILY, BERT_FAMILY, GPT_FAMILY)
