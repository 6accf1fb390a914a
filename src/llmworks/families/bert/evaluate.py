"""BERT's part of the evaluate stage: test-split scores through its validation scorer (masks
at ``bert.data.eval_mask_rate``), attention maps, and its mean-pooled states as a
representation to compare. It has no settings of its own beyond ``evaluate``'s shared ones."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from datasets import DatasetDict
from omegaconf import DictConfig

from llmworks.data.encode import encode_corpus
from llmworks.errors import LlmworksError
from llmworks.evaluation.attention import attention_figure
from llmworks.evaluation.embedders import transformer_embedder
from llmworks.evaluation.recorder import Recorder
from llmworks.evaluation.scoring import record_test_scores, score_batches
from llmworks.evaluation.trained import load_model
from llmworks.families.bert.data import MLMData
from llmworks.families.bert.hf import CLASSES, from_hf
from llmworks.families.bert.model import Bert
from llmworks.families.bert.module import MaskedLMScores, data_module
from llmworks.families.bert.settings import data_settings
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


# ----------------------------------------------------------------------------- references

REFERENCE_TYPES = tuple(CLASSES)


def score_reference(rec: Recorder, source: str, path: Path) -> dict[str, float]:
    """A published masked LM's test figures: the test split encoded with its own tokenizer,
    packed and masked as ours is at ``bert.data.eval_mask_rate`` (sequences no longer than
    ours, nor than its position table), scored by our scorer."""
    model, _ = from_hf(path, where=f"evaluate.references {source}")
    tok_json = path / TOKENIZER_FILE
    if not tok_json.is_file():
        raise LlmworksError(f"evaluate.references {source}: no {TOKENIZER_FILE} in {path}")
    data_cfg = data_settings(rec.cfg)
    data_cfg = replace(data_cfg, max_seq_len=min(data_cfg.max_seq_len, model.config.max_seq_len))
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        encode_corpus(
            DatasetDict({"test": rec.corpus["test"]}),
            tok_json,
            tokens,
            "[SEP]",
            int(rec.cfg.encode.batch_size),
            int(rec.cfg.encode.batch_bytes),
        )
        data = MLMData(tokens, tok_json, data_cfg, int(rec.cfg.seed))
        limit = rec.cfg.evaluate.max_test_batches
        results = score_batches(
            model.to(rec.device), MaskedLMScores(), data.test_dataloader(), limit, rec.device
        )
    return {f"test_{k}": v for k, v in results.items()}
