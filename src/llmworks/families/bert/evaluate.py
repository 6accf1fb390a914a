"""BERT's part of the evaluate stage: test-split scores through its validation scorer (masks
at ``bert.data.eval_mask_rate``), attention maps, and its mean-pooled states as a
representation to compare. It has no settings of its own beyond ``evaluate``'s shared ones."""

from __future__ import annotations

from omegaconf import DictConfig

from llmworks.evaluation.attention import attention_figure
from llmworks.evaluation.embedders import transformer_embedder
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.scoring import record_test_scores
from llmworks.evaluation.trained import load_model
from llmworks.families.bert.model import Bert
from llmworks.families.bert.module import MaskedLMScores, data_module
from llmworks.paths import TOKENIZER_FILE


def settings(cfg: DictConfig) -> None:
    """BERT's evaluation reads only the shared settings."""
    return None


def evaluate(rec: Recorder) -> None:
    """Test-split scores, attention maps and mean-pooled states over the words."""
    model, tok = load_model(rec, Bert, "bert")
    data = data_module(rec.cfg, rec.paths, rec.paths.model("bert") / TOKENIZER_FILE)
    # positions beyond the trained length were never learned
    max_len = min(model.config.max_seq_len, data.cfg.max_seq_len)
    record_test_scores(rec, "bert", model, MaskedLMScores(), data.test_dataloader())
    attention_figure(rec, "bert", model, tok, "BERT attention (bidirectional)", max_len)
    batch = int(rec.cfg.evaluate.representations.batch_size)
    rec.embedder("bert_mean", transformer_embedder(model, tok, max_len, batch))
