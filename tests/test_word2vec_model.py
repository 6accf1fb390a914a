"""The closed-form SGD step is exactly SGD on the negative-sampling loss, and it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from llmworks.models.word2vec import Word2Vec, Word2VecConfig


@pytest.mark.parametrize("sg", [True, False])
def test_sgd_step_equals_autograd_sgd(sg: bool) -> None:
    torch.manual_seed(0)
    V, D, G, k, n = 40, 8, 4, 3, 10  # n not a multiple of G: exercises the padding
    m = Word2Vec(Word2VecConfig(V, D, sg, k, G))
    m.input.data[:V].normal_(0, 0.3)
    m.output.data[:V].normal_(0, 0.3)
    inputs = torch.randint(V, (n,)) if sg else torch.randint(V + 1, (n, 4))
    outputs = torch.randint(V, (n,))
    negatives = torch.randint(V, (-(-n // G), k))
    inp = m.input.detach().clone().requires_grad_()
    out = m.output.detach().clone().requires_grad_()
    if sg:
        h = inp[inputs]
    else:
        # word2vec.c's CBOW hands each context word the gradient of the mean, undivided
        mask = (inputs != V).float()[..., None]
        h = ((inp[inputs] * mask).sum(1) / mask.sum(1).clamp(min=1)).detach().requires_grad_()
    pos = (h * out[outputs]).sum(-1)
    h_pad = torch.cat([h, torch.zeros(-n % G, D)])
    neg = torch.bmm(h_pad.view(-1, G, D), out[negatives].transpose(1, 2)).reshape(-1, k)[:n]
    logsig = torch.nn.functional.logsigmoid
    (-(logsig(pos).sum() + logsig(-neg).sum())).backward()
    lr = 0.1
    before_in, before_out = m.input.detach().clone(), m.output.detach().clone()
    m.sgd_step(inputs, outputs, negatives, lr)
    torch.testing.assert_close(m.output[:V], (before_out - lr * out.grad)[:V])
    if sg:
        expected_in = before_in - lr * inp.grad
    else:
        expected_in = before_in.index_add(
            0, inputs.reshape(-1), (-lr * h.grad)[:, None, :].expand(-1, 4, -1).reshape(-1, D)
        )
    torch.testing.assert_close(m.input[:V], expected_in[:V])
    assert m.input[V].abs().sum() == 0 and m.output[V].abs().sum() == 0


def test_skipgram_learns_planted_clusters() -> None:
    """Two groups of words that only co-occur within their group end up closer inside.

    A 20-word vocabulary needs small steps: every step sums the updates of each row it
    touches, and here every row is touched in every step."""
    from llmworks.data.word_vocab import WordVocab
    from llmworks.training.word2vec_module import build_corpus, fit_word2vec

    rng = np.random.default_rng(0)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    texts = [" ".join(rng.choice(groups[d % 2], size=40)) for d in range(200)]
    vocab, corpus = build_corpus(texts, 1, True)
    assert isinstance(vocab, WordVocab)
    w = OmegaConf.load("conf/word2vec/default.yaml")
    w = OmegaConf.merge(
        w, {"dim": 16, "epochs": 3, "batch_words": 2048, "step_words": 16, "group": 8}
    )
    module, _, wps = fit_word2vec(vocab, corpus, w, {"accelerator": "cpu", "devices": 1})
    vec = module.model.vectors.detach().numpy()
    vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    label = np.array([vocab.words[i][0] == "a" for i in range(len(vocab))])
    sims = vec @ vec.T
    same = sims[label[:, None] == label[None, :]].mean()
    other = sims[label[:, None] != label[None, :]].mean()
    assert same > other + 0.3
    assert wps > 0
