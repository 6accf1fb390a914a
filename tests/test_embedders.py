"""Text embedders (``evaluation/embedders.py``): mean-pooled Transformer states ignore padding
and special tokens and cut long texts to the trained length; bag-of-words counts and TF-IDF
rows come from scikit-learn over the training split's vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tiny import TEXT, random_bert, random_gpt
from tokenizers import Tokenizer

from llmworks.evaluation.embedders import bag_of_words_embedder, transformer_embedder

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


def test_bag_of_words_embedders() -> None:
    bow = bag_of_words_embedder(["cat dog", "dog river river"], tfidf=True)
    x = bow(["river cat", "unseen words only"]).toarray()  # sparse rows
    assert x.shape == (2, 3) and (x[0] > 0).sum() == 2 and (x[1] == 0).all()
    top = bag_of_words_embedder(["cat dog", "dog river dog"], tfidf=False, max_features=1)
    assert top(["river cat dog dog"]).toarray().tolist() == [[2.0]]  # only "dog" is kept
