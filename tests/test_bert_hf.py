"""BERT's Hugging Face mapping (``families/bert/hf.py``) on random weights equals
BertForMaskedLM (post-LN), MegatronBertForMaskedLM (pre-LN) and RoFormerForMaskedLM (rotary)
to float32 precision, padded batches included; the export loads with AutoModelForMaskedLM and
pipeline("fill-mask"); an architecture without a counterpart is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import VOCAB, padded_batch, random_bert

from llmworks.families.bert.hf import export_hf, to_hf


@pytest.mark.parametrize(
    ("norm", "pos", "hf_class"),
    [
        ("post", "learned", "BertForMaskedLM"),
        ("pre", "learned", "MegatronBertForMaskedLM"),
        ("post", "rope", "RoFormerForMaskedLM"),
    ],
)
def test_logits_match_hf_with_padding_and_segments(norm: str, pos: str, hf_class: str) -> None:
    model = random_bert(norm=norm, pos=pos)
    hf = to_hf(model)
    assert type(hf).__name__ == hf_class
    idx, mask, token_type = padded_batch()
    with torch.no_grad():
        ours = model(idx, mask, token_type)[0]
        theirs = hf(input_ids=idx, attention_mask=mask.long(), token_type_ids=token_type).logits
        plain = model(idx[:1])[0]
        plain_hf = hf(input_ids=idx[:1]).logits
    # padded positions are never read; compare every real one
    assert (ours - theirs)[mask].abs().max().item() <= 1e-4
    assert (plain - plain_hf).abs().max().item() <= 1e-4
    # padding changes nothing for the real tokens: row 2 alone, unpadded, gives the same
    with torch.no_grad():
        alone = model(idx[2:3, :5], token_type=token_type[2:3, :5])[0]
    assert (alone[0] - ours[2, :5]).abs().max().item() <= 1e-5


def test_loss_uses_only_labelled_positions() -> None:
    model = random_bert()
    hf = to_hf(model)
    idx, mask, _ = padded_batch()
    labels = torch.full_like(idx, -100)
    labels[0, 3], labels[1, 10], labels[2, 1] = 7, 8, 9
    with torch.no_grad():
        logits, loss = model(idx, mask, labels=labels)
        ref = hf(input_ids=idx, attention_mask=mask.long(), labels=labels)
    assert logits.shape == (3, VOCAB)
    assert abs(loss.item() - ref.loss.item()) <= 1e-5
    none = torch.full_like(idx, -100)
    assert model(idx, mask, labels=none)[1].item() == 0.0


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_export_loads_in_transformers_and_fills_masks(
    bert_shards,
    tmp_path: Path,
    pos: str,
) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    tok_json, _ = bert_shards
    model = random_bert(pos=pos)
    out = export_hf(model, tok_json, tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok(["the cat sat on the [MASK].", "rivers flow"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tok.cls_token_id
    with torch.no_grad():
        ours = model(enc["input_ids"], enc["attention_mask"].bool())[0]
        theirs = hf(**enc).logits
    real = enc["attention_mask"].bool()
    assert (ours - theirs)[real].abs().max().item() <= 1e-4
    fill = pipeline("fill-mask", model=str(out), tokenizer=str(out), top_k=3)
    preds = fill("the cat sat on the [MASK].")
    assert len(preds) == 3 and all(0 <= p["score"] <= 1 for p in preds)


def test_rope_without_a_hf_counterpart_is_refused_by_name() -> None:
    from llmworks.errors import LlmworksError

    with pytest.raises(LlmworksError, match="norm=pre has no Hugging Face counterpart"):
        to_hf(random_bert(norm="pre", pos="rope"))
    with pytest.raises(LlmworksError, match="rotary base is fixed at 10000"):
        to_hf(random_bert(pos="rope", rope_base=500.0))
