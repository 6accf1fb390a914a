"""BERT's Hugging Face mapping (``families/bert/hf.py``) on random weights, both ways: ours
equals BertForMaskedLM (post-LN), MegatronBertForMaskedLM (pre-LN) and RoFormerForMaskedLM
(rotary) to float32 precision, padded batches included; the export loads with
AutoModelForMaskedLM and pipeline("fill-mask"); an imported checkpoint gives its logits, its
tensors back on export and the fill-mask pipeline's answer; what has no counterpart is
refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import HF_MASKED, VOCAB, hf_checkpoint, padded_batch, random_bert

from llmworks.errors import LlmworksError
from llmworks.families.bert.hf import export_hf, from_hf, hf_state_dict, to_hf

from conftest import run_stage


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


# ----------------------------------------------------------------------------- import


@pytest.mark.parametrize("kind", HF_MASKED)
def test_an_imported_checkpoint_gives_the_same_logits(kind: str, tmp_path: Path) -> None:
    hf = hf_checkpoint(kind, tmp_path, type_vocab_size=2)
    model, _ = from_hf(tmp_path)
    idx, mask, token_type = padded_batch()
    with torch.no_grad():
        ours = model(idx, mask, token_type)[0]
        theirs = hf(input_ids=idx, attention_mask=mask.long(), token_type_ids=token_type).logits
    assert (ours - theirs)[mask].abs().max().item() <= 1e-4


@pytest.mark.parametrize("kind", HF_MASKED)
def test_exporting_an_import_gives_back_the_checkpoint(kind: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    hf_checkpoint(kind, tmp_path)
    model, _ = from_hf(tmp_path)
    got = hf_state_dict(model)
    want = {
        k: v for k, v in load_file(tmp_path / "model.safetensors").items()
        if not k.endswith(("embed_positions.weight", "position_ids"))
    }  # fmt: skip
    want.setdefault(
        "cls.predictions.decoder.weight", want[next(k for k in want if "word_embeddings" in k)]
    )
    want.setdefault("cls.predictions.decoder.bias", want["cls.predictions.bias"])
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k].float()) for k in want), kind


def test_fill_mask_reads_a_hf_checkpoint_as_the_fill_mask_pipeline(
    wordpiece_json: Path, tmp_path: Path
) -> None:
    from transformers import pipeline

    ckpt = tmp_path / "ckpt"
    hf_checkpoint("bert", ckpt, vocab=200, tokenizer=wordpiece_json)
    proc = run_stage(
        "fill_mask", f"model_dir={ckpt}", "text=the cat sat on the [MASK].", "top_k=3",
        f"hydra.run.dir={tmp_path / 'h'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    top_token = proc.stdout.strip().splitlines()[2].split()[1]
    theirs = pipeline("fill-mask", model=str(ckpt), top_k=3)("the cat sat on the [MASK].")
    assert theirs[0]["token_str"].replace(" ", "") == top_token.replace("##", "")


def test_what_we_do_not_compute_exactly_is_refused_in_one_line() -> None:
    import transformers as tf

    from llmworks.families.bert.hf import config_from_hf

    with pytest.raises(
        LlmworksError, match="not a masked LM we import; supported: BertForMaskedLM"
    ):
        config_from_hf(tf.DistilBertConfig())
    relative = tf.BertConfig(position_embedding_type="relative_key")
    with pytest.raises(LlmworksError, match="position_embedding_type='relative_key'"):
        config_from_hf(relative)
