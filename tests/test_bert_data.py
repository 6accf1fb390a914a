"""BERT's data (``families/bert/data.py``): sequences respect documents, dynamic masking follows BERT's 80/10/10 recipe,
never touches special or padding tokens, masks whole words on request, and validation
masks are the same on every run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from llmworks.data.shards import open_shards
from llmworks.errors import LlmworksError
from llmworks.families.bert.data import IGNORE_INDEX, MLMCollator, MLMData, MLMSequences

from conftest import mlm_data_config


def data_config(**overrides):
    base = dict(max_seq_len=32, batch_size=8, max_val_batches=None)
    return mlm_data_config(**(base | overrides))


def epochs(data: MLMData, n: int, start: int = 0) -> list[dict]:
    """The training batches of epochs ``start`` to ``start + n - 1``, as Lightning draws them
    (it sets the sampler's epoch before each pass)."""
    loader = data.train_dataloader()
    batches = []
    for epoch in range(start, start + n):
        loader.sampler.set_epoch(epoch)
        batches += list(loader)
    return batches


def test_training_order_and_masks_are_seeded_per_epoch_and_resumable(bert_shards) -> None:
    """Dynamic masking without the global random stream: each epoch masks anew, the same
    seed and epoch mask alike, and a run resumed mid-epoch gets the batches it would have."""
    tok_json, shards_dir = bert_shards
    data = MLMData(shards_dir, tok_json, data_config(batch_size=4), seed=5)
    first, second = epochs(data, 1), epochs(data, 1, start=1)
    assert not torch.equal(first[0]["labels"], second[0]["labels"][: len(first[0]["labels"])])
    again = epochs(MLMData(shards_dir, tok_json, data_config(batch_size=4), seed=5), 1)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again, strict=True) for k in a)
    loader = data.train_dataloader()
    loader.sampler.set_epoch(0)
    loader.sampler.start = 2 * 4  # two batches of this epoch were trained before the crash
    resumed = list(loader)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first[2:], resumed, strict=True) for k in a)


@pytest.mark.parametrize("packing", ["docs", "windows"])
def test_sequences_frame_documents_and_keep_every_token(bert_shards, packing: str) -> None:
    tok_json, shards_dir = bert_shards
    tok = Tokenizer.from_file(str(tok_json))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    split = open_shards(shards_dir, tok_json).split("train")
    seqs = MLMSequences(split, 64, cls_id, sep_id, packing)
    body = []
    for i in range(len(seqs)):
        ids = seqs[i]["input_ids"].tolist()
        assert len(ids) <= 64 and ids[0] == cls_id and ids[-1] == sep_id
        body += [t for t in ids[1:] if t != sep_id]
        if packing == "windows":
            assert ids.count(sep_id) == 1
    expected = [t for d in range(split.n_docs) for t in split.document(d).tolist()]
    assert body == expected  # every token once, in order, documents never merged mid-window
    # docs packing puts several short documents in one sequence, each closed by [SEP]
    if packing == "docs":
        assert max(seqs[i]["input_ids"].tolist().count(sep_id) for i in range(len(seqs))) > 1
        assert len(seqs) < len(MLMSequences(split, 64, cls_id, sep_id, "windows"))
    assert seqs.n_tokens() == sum(len(seqs[i]["input_ids"]) for i in range(len(seqs)))


def test_masking_statistics_follow_80_10_10_and_spare_special_tokens(bert_shards) -> None:
    tok_json, shards_dir = bert_shards
    data = MLMData(shards_dir, tok_json, data_config(batch_size=16, mask_rate=0.15), seed=0)
    special = data.train_dataloader().collate_fn.special
    n_maskable = n_selected = n_mask = n_random = n_same = 0
    batches = epochs(data, 8)  # fresh masks every epoch
    for batch in batches:
        ids, labels = batch["input_ids"], batch["labels"]
        selected = labels != IGNORE_INDEX
        source = torch.where(selected, labels, ids)  # the unmasked batch
        assert not (selected & special[source]).any(), "a special or padding token was masked"
        assert (ids[~selected] == source[~selected]).all(), "an unselected token changed"
        assert (ids[source == data.ids["pad"]] == data.ids["pad"]).all()
        assert (batch["attention_mask"] == (source != data.ids["pad"])).all()
        n_maskable += int((~special[source]).sum())
        n_selected += int(selected.sum())
        n_mask += int((ids[selected] == data.ids["mask"]).sum())
        n_same += int((ids[selected] == source[selected]).sum())
        n_random += int(((ids != source) & (ids != data.ids["mask"])).sum())
        assert not special[ids[selected & (ids != data.ids["mask"])]].any()
    # several thousand masked tokens: 3-sigma tolerances are about +-1.5% and +-1.2%
    assert n_selected > 2000
    assert n_selected / n_maskable == pytest.approx(0.15, abs=0.015)
    assert n_mask / n_selected == pytest.approx(0.80, abs=0.03)
    # a random replacement can draw the original token (1/vocab): counted as unchanged
    assert n_random / n_selected == pytest.approx(0.10, abs=0.025)
    assert n_same / n_selected == pytest.approx(0.10, abs=0.025)


def test_mask_rate_is_configurable() -> None:
    collator = MLMCollator(
        100, pad_id=0, mask_id=4, special_ids=[0, 1, 2, 3, 4], mask_rate=0.3, whole_word=False
    )
    ids = torch.randint(5, 100, (64, 128), generator=torch.Generator().manual_seed(0))
    _, labels = collator.mask(ids, torch.Generator().manual_seed(1))
    assert (labels != IGNORE_INDEX).float().mean().item() == pytest.approx(0.3, abs=0.01)
    with pytest.raises(LlmworksError, match="mask_rate"):
        MLMCollator(100, 0, 4, [0], mask_rate=1.5, whole_word=False)


def test_whole_word_masking_masks_all_pieces_of_a_word(bert_shards) -> None:
    tok_json, shards_dir = bert_shards
    tok = Tokenizer.from_file(str(tok_json))
    data = MLMData(
        shards_dir, tok_json, data_config(whole_word=True, batch_size=16, mask_rate=0.15), seed=0
    )
    collator = data.train_dataloader().collate_fn
    cont = collator.continuation
    words_split = n_selected = n_maskable = 0
    for batch in epochs(data, 4):
        labels = batch["labels"]
        selected = labels != IGNORE_INDEX
        source = torch.where(selected, labels, batch["input_ids"])
        maskable = ~collator.special[source]
        prev_maskable = torch.nn.functional.pad(maskable[:, :-1], (1, 0))
        # a ## piece is selected exactly when the piece before it is (unless a window cut
        # the word, leaving the piece right after [CLS])
        is_cont = cont[source] & maskable & prev_maskable
        prev_selected = torch.nn.functional.pad(selected[:, :-1], (1, 0))
        assert (selected[is_cont] == prev_selected[is_cont]).all()
        words_split += int((selected & torch.roll(is_cont, -1, 1)).sum())
        n_selected += int(selected.sum())
        n_maskable += int((~collator.special[source]).sum())
    assert words_split > 0, "the corpus should hold multi-piece words"
    assert n_selected / n_maskable == pytest.approx(0.15, abs=0.03)
    assert any(t.startswith("##") for t in tok.get_vocab())


def test_validation_masks_are_seeded_per_sequence(bert_shards) -> None:
    tok_json, shards_dir = bert_shards
    first = list(MLMData(shards_dir, tok_json, data_config(batch_size=4), seed=0).val_dataloader())
    again = list(MLMData(shards_dir, tok_json, data_config(batch_size=4), seed=0).val_dataloader())
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    # the same sequence gets the same mask whatever the batch size
    bigger = next(
        iter(MLMData(shards_dir, tok_json, data_config(batch_size=8), seed=0).val_dataloader())
    )
    T = first[0]["labels"].shape[1]
    assert torch.equal(bigger["labels"][:4, :T], first[0]["labels"])
    other_seed = next(
        iter(
            MLMData(
                shards_dir, tok_json, data_config(batch_size=4, val_seed=7), seed=0
            ).val_dataloader()
        )
    )
    assert not torch.equal(other_seed["labels"], first[0]["labels"])
    limited = MLMData(shards_dir, tok_json, data_config(batch_size=4, max_val_batches=1), seed=0)
    assert len(list(limited.val_dataloader())) == 1


def test_validation_masks_at_the_evaluation_rate_whatever_training_masks(bert_shards) -> None:
    tok_json, shards_dir = bert_shards

    def share_masked(batches: list[dict]) -> float:
        labelled = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        return labelled / real

    trains_at_40 = MLMData(shards_dir, tok_json, data_config(mask_rate=0.4), seed=0)
    trains_at_15 = MLMData(shards_dir, tok_json, data_config(), seed=0)
    assert share_masked(epochs(trains_at_40, 1)) == pytest.approx(0.4 * 0.85, abs=0.06)
    val_40, val_15 = list(trains_at_40.val_dataloader()), list(trains_at_15.val_dataloader())
    assert share_masked(val_40) == pytest.approx(0.15 * 0.85, abs=0.04)
    for a, b in zip(val_40, val_15, strict=True):  # the same validation task, mask for mask
        assert torch.equal(a["labels"], b["labels"])
    with pytest.raises(LlmworksError, match="eval_mask_rate"):
        MLMData(shards_dir, tok_json, data_config(eval_mask_rate=0.0), seed=0)


def test_validation_under_ddp_counts_every_sequence_once(bert_shards) -> None:
    from types import SimpleNamespace

    tok_json, shards_dir = bert_shards
    data = MLMData(shards_dir, tok_json, data_config(batch_size=5, max_val_batches=3), seed=0)
    data.trainer = SimpleNamespace(world_size=2)  # what Lightning attaches under 2-process DDP
    padded = data.val_dataloader().dataset
    assert len(padded) == 16  # 15 sequences + one that holds no maskable token
    extra = data.val_collator([padded[15]])
    assert (extra["labels"] == IGNORE_INDEX).all()
    assert [padded[i]["index"] for i in range(15)] == list(range(15))


def test_a_tokenizer_without_bert_tokens_is_refused(bert_shards, tmp_path: Path) -> None:
    from tokenizers import models

    tok_json, shards_dir = bert_shards
    bare = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    bare.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(LlmworksError):
        MLMData(shards_dir, tmp_path / "tokenizer.json", data_config(), seed=0)
    with pytest.raises(LlmworksError, match="packing"):
        MLMData(shards_dir, tok_json, data_config(packing="bogus"), seed=0).sequences("train")
