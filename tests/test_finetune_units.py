"""The parts of the finetune stage against their peers: each BERT classifier equals the
``transformers`` ``*ForSequenceClassification`` it exports to, the GPT classifier pools the
last real token whatever the padding, the probe's pair features, and the task's refusals."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from scipy import sparse

from llmworks.errors import LlmworksError
from llmworks.families.bert import downstream as bert_part
from llmworks.families.gpt import downstream as gpt_part
from llmworks.finetune.classifier import ClassifierConfig, encode_batch, forward
from llmworks.finetune.probe import features, scores
from llmworks.finetune.task import Split, TaskConfig, label_examples

from conftest import bert_config, gpt_config

TEXTS = ["The river flows to the sea.", "A tokenizer splits raw text into pieces."]
PAIRS = ["Paris is the capital of France.", "The cat sat on the mat."]


@pytest.mark.parametrize(
    ("norm", "pos", "hf_class"),
    [
        ("post", "learned", "BertForSequenceClassification"),
        ("pre", "learned", "MegatronBertForSequenceClassification"),
        ("post", "rope", "RoFormerForSequenceClassification"),
    ],
)
def test_bert_classifier_equals_its_hf_export(
    wordpiece_json: Path, tmp_path: Path, norm: str, pos: str, hf_class: str
) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    vocab = Tokenizer.from_file(str(wordpiece_json)).get_vocab_size()
    enc = bert_config(vocab, norm=norm, pos=pos, dropout=0.0, n_layer=2, n_head=2, d_model=32,
                      max_seq_len=64)  # fmt: skip
    arch = {"post-learned": "bert", "pre-learned": "megatron-bert", "post-rope": "roformer"}
    arch = arch[f"{norm}-{pos}"]
    config = ClassifierConfig("bert", asdict(enc), ["a", "b", "c"], "cls", 32, 0.1,
                              {"act": bert_part.HEAD_ACT[arch], "arch": arch})  # fmt: skip
    torch.manual_seed(0)
    net = bert_part.build_classifier(config).eval()
    for p in net.parameters():  # nothing left at its init value (zeros would hide a bug)
        p.data.normal_(0, 0.1)
    bert_part.export(net, config, wordpiece_json, tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == hf_class
    tok = bert_part.task_tokenizer(wordpiece_json, config)
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for pairs in (None, PAIRS):
        ours = encode_batch(tok, TEXTS, pairs)
        theirs_in = hf_tok(TEXTS, pairs, padding=True, truncation=True, return_tensors="pt")
        assert theirs_in["input_ids"].tolist() == ours["input_ids"].tolist()
        assert theirs_in["token_type_ids"].tolist() == ours["token_type_ids"].tolist()
        with torch.no_grad():
            torch.testing.assert_close(
                hf(**theirs_in).logits, forward(net, ours), atol=1e-4, rtol=0
            )
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_gpt_classifier_reads_the_appended_end_of_text_token(bpe_json: Path) -> None:
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(bpe_json)).get_vocab_size()
    dec = gpt_config(vocab, n_layer=2, n_head=2, d_model=32, block_size=64)
    config = ClassifierConfig("gpt", asdict(dec), ["x", "y"], "last", 24, 0.0,
                              {"eot": "<|endoftext|>"})  # fmt: skip
    net = gpt_part.build_classifier(config).eval()
    tok = gpt_part.task_tokenizer(bpe_json, config)
    batch = encode_batch(tok, ["short", TEXTS[1] * 5], None)
    eot = tok.token_to_id("<|endoftext|>")
    ends = batch["attention_mask"].sum(1) - 1
    assert batch["input_ids"][torch.arange(2), ends].tolist() == [eot, eot]  # kept when cut
    assert batch["input_ids"].shape[1] == 24
    alone = forward(net, encode_batch(tok, ["short"], None))
    torch.testing.assert_close(forward(net, batch)[:1], alone, atol=1e-5, rtol=0)


def test_pair_features_and_scores() -> None:
    def embed(texts):
        return np.array([[len(t), 1.0] for t in texts])

    x = features(embed, Split(["ab", "c"], ["a", "cde"], [0, 1]))
    np.testing.assert_array_equal(x[0], [2, 1, 1, 1, 1, 0, 2, 1])
    sp = features(lambda t: sparse.csr_matrix(embed(t)), Split(["ab"], ["a"], [0]))
    np.testing.assert_array_equal(sp.toarray(), x[:1])
    got = scores([0, 0, 1, 2], [0, 1, 1, 1], 3)
    from sklearn.metrics import f1_score

    assert got["accuracy"] == 0.5
    assert got["macro_f1"] == pytest.approx(f1_score([0, 0, 1, 2], [0, 1, 1, 1], average="macro"))


def _task(**overrides) -> TaskConfig:
    from conftest import preset

    values = preset("task", "embedded") | {"seed": 0, "source": "local"} | overrides
    return TaskConfig(**values)


def _raw(train, validation, test, column="label"):
    def ds(labels):
        return datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(len(labels))],
                                           column: labels})  # fmt: skip

    return {"train": ds(train), "validation": ds(validation), "test": ds(test)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_raw(["a", "b"], ["a"], ["b"], column="y"), "task.label_field='label' is not a column"),
        (_raw(["a", "b"], ["a"], ["c"]), "label 'c' appears in the test split"),
        (_raw(["a", "a"], ["a"], ["a"]), "a single label ('a')"),
        (_raw(["a", "b"], ["a"], []), "the test split holds no examples"),
    ],
)
def test_what_cannot_make_a_task_is_refused(raw, message: str) -> None:
    with pytest.raises(LlmworksError, match=message.replace("(", r"\(").replace(")", r"\)")):
        label_examples(_task(), raw)


def test_labels_are_mapped_in_sorted_order_once() -> None:
    splits, names = label_examples(_task(), _raw(["b", "a", "c"], ["c"], ["a", "b"]))
    assert names == ["a", "b", "c"]
    assert splits["train"]["label"] == [1, 0, 2] and splits["test"]["label"] == [0, 1]
