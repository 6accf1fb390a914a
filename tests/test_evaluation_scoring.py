"""Test-split scores (``evaluation/scoring.py`` through the families' validation scorers)
against a peer: the losses, perplexities and accuracies equal what Hugging Face computes on the
exported weights, over padded and partial batches."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import TEXT, random_bert, random_gpt
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from llmworks.data.shards import TextPerToken
from llmworks.evaluation.scoring import score_batches
from llmworks.families.bert import hf as hf_bert
from llmworks.families.bert.data import IGNORE_INDEX, MLMCollator
from llmworks.families.bert.module import MaskedLMScores
from llmworks.families.gpt import hf as hf_gpt
from llmworks.families.gpt.module import NextTokenScores


def causal_lm_metrics(model, windows, batch_size, text_per_token, max_batches=None):
    """The evaluate stage's GPT test scores over ``windows``."""
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False)
    scores = NextTokenScores(text_per_token, moe=False)
    return {f"test_{k}": v for k, v in score_batches(model, scores, loader, max_batches).items()}


def masked_lm_metrics(model, batches):
    """The evaluate stage's BERT test scores over ``batches``."""
    return {f"test_{k}": v for k, v in score_batches(model, MaskedLMScores(), batches).items()}


def test_causal_lm_metrics_equal_hf_loss(bpe_json: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    vocab = Tokenizer.from_file(str(bpe_json)).get_vocab_size()
    model = random_gpt(vocab=vocab)
    hf = AutoModelForCausalLM.from_pretrained(hf_gpt.export_hf(model, bpe_json, tmp_path)).eval()
    g = torch.Generator().manual_seed(0)
    seqs = torch.randint(0, vocab, (5, 17), generator=g)
    windows = [(s[:-1], s[1:]) for s in seqs]  # 5 windows in batches of 2: the last is partial
    got = causal_lm_metrics(model, windows, 2, TextPerToken(bytes=3.0, words=0.8))
    with torch.no_grad():
        logits = hf(seqs[:, :-1]).logits
    want = F.cross_entropy(logits.flatten(0, 1), seqs[:, 1:].flatten()).item()
    assert got["test_loss"] == pytest.approx(want, abs=1e-5)
    assert got["test_tokens"] == 5 * 16
    assert got["test_ppl"] == pytest.approx(math.exp(got["test_loss"]))
    assert got["test_bpb"] == pytest.approx(got["test_loss"] / math.log(2) / 3.0)
    # 0.8 words per token: a word costs 1.25 tokens' loss
    assert got["test_word_ppl"] == pytest.approx(math.exp(got["test_loss"] * 1.25))

    first = causal_lm_metrics(model, windows, 2, None, max_batches=1)
    want_first = F.cross_entropy(logits[:2].flatten(0, 1), seqs[:2, 1:].flatten()).item()
    assert first["test_tokens"] == 32 and "test_bpb" not in first and "test_word_ppl" not in first
    assert first["test_loss"] == pytest.approx(want_first, abs=1e-5)


def test_masked_lm_metrics_equal_hf_loss_and_accuracy(wordpiece_json: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForMaskedLM

    tok = Tokenizer.from_file(str(wordpiece_json))
    model = random_bert(vocab=tok.get_vocab_size())
    hf = AutoModelForMaskedLM.from_pretrained(hf_bert.export_hf(model, wordpiece_json, tmp_path))
    hf.eval()
    collate = MLMCollator.from_tokenizer(wordpiece_json, mask_rate=0.3, whole_word=False, seed=7)
    examples = [
        {"input_ids": torch.tensor(tok.encode(t).ids), "index": i} for i, t in enumerate(TEXT)
    ]
    batches = [collate(examples[:2]), collate(examples[2:])]  # padded, unequal masked counts
    assert any((~b["attention_mask"]).any() for b in batches)
    got = masked_lm_metrics(model, batches)

    losses, hits, count = [], 0, 0
    with torch.no_grad():
        for b in batches:
            logits = hf(input_ids=b["input_ids"], attention_mask=b["attention_mask"].long()).logits
            sel = b["labels"] != IGNORE_INDEX
            losses.append(F.cross_entropy(logits[sel], b["labels"][sel], reduction="sum").item())
            hits += int((logits[sel].argmax(-1) == b["labels"][sel]).sum())
            count += int(sel.sum())
    assert got["test_tokens"] == count > 0
    assert got["test_mlm_loss"] == pytest.approx(sum(losses) / count, abs=1e-5)
    assert got["test_mlm_acc"] == pytest.approx(hits / count)
    assert got["test_ppl"] == pytest.approx(math.exp(got["test_mlm_loss"]))
