"""The evaluate stage's building blocks against peers: test-split losses equal what Hugging
Face computes on the exported weights, pooled embeddings ignore padding and specials, and
GPT samples are greedy or seeded exactly as documented."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gpt_helpers import TEXT, train_bpe
from test_attention import random_bert, random_gpt
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from llmworks.data.mlm import IGNORE_INDEX, MLMCollator
from llmworks.data.shards import TextPerToken
from llmworks.evaluation.embedders import (
    bag_of_words_embedder,
    transformer_embedder,
    word2vec_embedder,
)
from llmworks.evaluation.run import score_batches
from llmworks.export import hf_bert, hf_gpt
from llmworks.generation import EOT, complete
from llmworks.tokenization.build import add_bert_framing, build_tokenizer
from llmworks.training.bert import MaskedLMScores
from llmworks.training.gpt import NextTokenScores

from conftest import tokenizer_spec


@pytest.fixture(scope="module")
def bpe_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bpe(tmp_path_factory.mktemp("bpe") / "tokenizer.json")


@pytest.fixture(scope="module")
def wordpiece_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok, trainer = build_tokenizer(tokenizer_spec("wordpiece", vocab_size=200))
    tok.train_from_iterator(TEXT * 20, trainer)
    add_bert_framing(tok)
    path = tmp_path_factory.mktemp("wordpiece") / "tokenizer.json"
    tok.save(str(path))
    return path


# ----------------------------------------------------------------------------- test losses


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


# ----------------------------------------------------------------------------- embedders

TEXTS = [TEXT[0], TEXT[1] + " " + TEXT[2], "Paris."]


def test_gpt_embeddings_ignore_padding(bpe_json: Path) -> None:
    tok = Tokenizer.from_file(str(bpe_json))
    model = random_gpt(vocab=tok.get_vocab_size())
    embed = transformer_embedder(model, tok, model.config.block_size, batch_size=8)
    together = embed(TEXTS)
    alone = np.concatenate([embed([t]) for t in TEXTS])
    assert together.shape == (3, model.config.d_model)
    assert abs(together - alone).max() < 1e-5
    with torch.no_grad():
        ids = torch.tensor([tok.encode(TEXTS[2]).ids])
        want = model.encode(ids)[0].mean(0).numpy()
    assert abs(together[2] - want).max() < 1e-5
    too_long = embed([" ".join(TEXT * 5)])  # beyond block_size: cut, not a crash
    assert np.isfinite(too_long).all()


def test_bert_embeddings_ignore_padding_and_specials(wordpiece_json: Path) -> None:
    tok = Tokenizer.from_file(str(wordpiece_json))
    model = random_bert(vocab=tok.get_vocab_size())
    embed = transformer_embedder(model, tok, model.config.max_seq_len, batch_size=8)
    together = embed(TEXTS)
    alone = np.concatenate([embed([t]) for t in TEXTS])
    assert abs(together - alone).max() < 1e-5
    enc = tok.encode(TEXTS[0])
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    with torch.no_grad():
        h = model.encode(torch.tensor([enc.ids]))[0]
    assert abs(together[0] - h[1:-1].mean(0).numpy()).max() < 1e-5
    assert np.isfinite(embed([" ".join(TEXT * 5)])).all()

    # longer than the trained length: cut to max_len with [SEP] kept at the end
    long_text = " ".join(TEXT * 5)
    ids = tok.encode(long_text).ids
    assert len(ids) > 12
    cut = torch.tensor([ids[:11] + ids[-1:]])
    with torch.no_grad():
        want = model.encode(cut)[0, 1:-1].mean(0).numpy()
    got = transformer_embedder(model, tok, max_len=12, batch_size=8)([long_text])[0]
    assert abs(got - want).max() < 1e-5


def test_word_vector_and_bag_of_words_embedders() -> None:
    words = ["cat", "dog", "river"]
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]], dtype=np.float32)
    out = word2vec_embedder(words, vectors, lowercase=True)(["The CAT and the dog", "nothing"])
    assert out[0].tolist() == [0.5, 0.5] and out[1].tolist() == [0.0, 0.0]

    bow = bag_of_words_embedder(["cat dog", "dog river river"], tfidf=True)
    x = bow(["river cat", "unseen words only"]).toarray()  # sparse rows
    assert x.shape == (2, 3) and (x[0] > 0).sum() == 2 and (x[1] == 0).all()
    top = bag_of_words_embedder(["cat dog", "dog river dog"], tfidf=False, max_features=1)
    assert top(["river cat dog dog"]).toarray().tolist() == [[2.0]]  # only "dog" is kept


def test_word2vec_embedder_on_subword_tokens(bpe_json: Path) -> None:
    """word2vec.tokenizer: the vectors are of tokenizer tokens, so texts are cut the same way."""
    tok = Tokenizer.from_file(str(bpe_json))
    tokens = tok.encode("the river", add_special_tokens=False).tokens
    words = [t.replace(" ", "\u2581") for t in tokens]
    vectors = np.eye(len(words), dtype=np.float32)
    out = word2vec_embedder(words, vectors, lowercase=False, tokenizer=tok)(["the river"])
    assert out[0] == pytest.approx(np.full(len(words), 1 / len(words)))
    assert len(words) >= 2 and any(w not in ("the", "river") for w in words)
    plain = word2vec_embedder(words, vectors, lowercase=False)(["the river"])
    assert not np.allclose(plain, out)  # cutting into words would miss the tokens


# ----------------------------------------------------------------------------- samples


def test_complete_is_greedy_or_seeded(bpe_json: Path) -> None:
    tok = Tokenizer.from_file(str(bpe_json))
    model = random_gpt(vocab=tok.get_vocab_size())
    eot = tok.token_to_id(EOT)
    with torch.no_grad():  # keep EOT out of the way for this part
        model.lm_head.weight[eot] = 0.0
        model.wte.weight[eot] = 0.0
    prompt = "The cat"
    ids = tok.encode(prompt).ids
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    greedy = complete(model, tok, prompt, 12)
    assert greedy == tok.decode(ids[len(tok.encode(prompt).ids) :])

    a = complete(model, tok, prompt, 30, temperature=1.0, seed=1)
    b = complete(model, tok, prompt, 30, temperature=1.0, seed=1)
    c = complete(model, tok, prompt, 30, temperature=1.0, seed=2)
    assert a == b and a != c


def test_complete_cuts_at_end_of_text(bpe_json: Path) -> None:
    """Text after ``<|endoftext|>`` belongs to another document: it is never returned."""
    tok = Tokenizer.from_file(str(bpe_json))
    eot = tok.token_to_id(EOT)
    cat, dog = tok.encode(" cat").ids, tok.encode(" dog").ids

    class Scripted(torch.nn.Module):  # a model whose generate() returns a fixed script
        def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> torch.Tensor:
            assert kwargs["stop_token"] == eot
            return torch.tensor([idx[0].tolist() + cat + [eot] + dog])

    assert complete(Scripted(), tok, "The", 10) == " cat"


# ----------------------------------------------------------------------------- device


def test_eval_device_resolves_auto_and_rejects_what_torch_cannot_use() -> None:
    from llmworks.errors import LlmworksError
    from llmworks.evaluation.run import eval_device

    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert eval_device("auto").type == want and eval_device("cpu") == torch.device("cpu")
    with pytest.raises(LlmworksError, match="evaluate.device='gpu0'"):
        eval_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(LlmworksError, match="no CUDA device"):
            eval_device("cuda")
