"""The closed-form SGD step is exactly SGD on the negative-sampling loss, and it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmworks.families.word2vec.model import Word2Vec, Word2VecConfig

from conftest import preset


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
    import lightning as L

    from llmworks.config import typed
    from llmworks.families.word2vec.data import Word2VecData, word_corpus
    from llmworks.families.word2vec.module import Word2VecModule
    from llmworks.families.word2vec.settings import Word2VecDataConfig, Word2VecOptimConfig
    from llmworks.words import tokenize

    rng = np.random.default_rng(0)
    groups = [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]]
    texts = [" ".join(rng.choice(groups[d % 2], size=40)) for d in range(200)]
    vocab, (corpus,) = word_corpus([[tokenize(t) for t in texts]], min_count=1)
    w = preset("word2vec", "default")
    config = Word2VecConfig(len(vocab), **(w["model"] | {"dim": 16, "group": 8}))
    data = typed(Word2VecDataConfig, w["data"] | {"batch_words": 2048, "step_words": 16}, "data")
    optim = typed(Word2VecOptimConfig, w["optim"], "optim")
    L.seed_everything(0, verbose=False)
    module = Word2VecModule(config, optim, vocab.counts, 3 * corpus.raw_words, seed=0)
    datamodule = Word2VecData(vocab, corpus, corpus, data, True, config.negative, seed=0)
    trainer = L.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule)
    assert module.lr() == pytest.approx(optim.min_alpha)  # the schedule ran to its end
    vec = module.model.vectors.detach().numpy()
    vec = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    label = np.array([vocab.words[i][0] == "a" for i in range(len(vocab))])
    sims = vec @ vec.T
    same = sims[label[:, None] == label[None, :]].mean()
    other = sims[label[:, None] != label[None, :]].mean()
    assert same > other + 0.3
