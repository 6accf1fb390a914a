"""Word2Vec: skip-gram and CBOW with negative sampling (Mikolov et al., 2013).

Two tables: ``input`` (the word vectors we keep) and ``output`` (the vectors of predicted
words). For an (input h, output o) example and k noise words n_j the loss is

    -log σ(h·o) - Σ_j log σ(-h·n_j)

Its gradient has a closed form, so ``sgd_step`` applies it directly -- no autograd graph, no
dense gradient tensors: gather the rows a batch uses, compute the two sigmoid terms, and
``index_add_`` the updates back into only those rows (what sparse gradients would do, without
their bookkeeping). This is what word2vec.c and gensim do one pair at a time; here a whole
chunk of the corpus at once, which is what makes it fast in PyTorch.

Negatives are shared within a group of ``group`` examples: one draw of k noise words serves
``group`` rows through one batched matmul instead of k gathers per example. Every example
still sees k negatives, as in gensim; only their draws are correlated inside a group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from llmworks.domains import at_least
from llmworks.models.persistence import load_model_dir, save_model_dir


@dataclass
class Word2VecConfig:
    """The model's shape; the values live in ``conf/word2vec/*.yaml`` (``model``), the
    vocabulary size comes from the corpus."""

    vocab_size: int
    dim: int
    sg: bool  # skip-gram; False is CBOW (mean of the context vectors)
    negative: int  # noise words per example
    group: int  # examples sharing one draw of negatives

    def __post_init__(self) -> None:
        at_least(1, vocab_size=self.vocab_size, dim=self.dim,
                 negative=self.negative, group=self.group)  # fmt: skip


def _rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    # F.embedding is an index_select: several times faster on CPU than table[index]
    return nn.functional.embedding(index, table)


class Word2Vec(nn.Module):
    def __init__(self, config: Word2VecConfig):
        super().__init__()
        self.config = config
        V, D = config.vocab_size, config.dim
        # word2vec.c's init: input uniform in ±0.5/dim, output zeros. One extra zero row at
        # index V pads CBOW windows; it is never updated.
        inp = (torch.rand(V + 1, D) - 0.5) / D
        inp[V] = 0
        # Parameters (DDP broadcasts them at start), but never given gradients: sgd_step
        # writes the updates itself under no_grad.
        self.input = nn.Parameter(inp)
        self.output = nn.Parameter(torch.zeros(V + 1, D))
        self._buffers_cache: dict[str, torch.Tensor] = {}

    @property
    def pad(self) -> int:
        return self.config.vocab_size

    @property
    def vectors(self) -> torch.Tensor:
        """The word vectors (the input table without its padding row)."""
        return self.input.detach()[: self.config.vocab_size]

    def encode_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Hidden vector per example: the input row (skip-gram) or the mean of the context
        rows (CBOW, ``inputs`` of shape (n, 2 * window) padded with ``pad``)."""
        if self.config.sg:
            return _rows(self.input, inputs)
        count = (inputs != self.pad).sum(1, keepdim=True).clamp_(min=1)
        return _rows(self.input, inputs).sum(1) / count

    def _buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        # Reused across steps: fresh multi-MB tensors every step cost page faults that take
        # longer than the arithmetic.
        buf = self._buffers_cache.get(name)
        if buf is None or buf.device != self.input.device:
            buf = self._buffers_cache[name] = torch.empty(0, device=self.input.device)
        return buf.resize_(shape)

    @torch.no_grad()
    def sgd_step(
        self, inputs: torch.Tensor, outputs: torch.Tensor, negatives: torch.Tensor, lr: float
    ) -> torch.Tensor:
        """One SGD step on a batch; ``negatives`` is (ceil(n / group), k). Returns the mean
        loss before the step."""
        G, D = self.config.group, self.config.dim
        short = -outputs.shape[0] % G
        if short:  # pad to whole groups with the zero row, whose updates are undone below
            outputs = nn.functional.pad(outputs, (0, short), value=self.pad)
            pad_in = (0, 0, 0, short) if inputs.dim() == 2 else (0, short)
            inputs = nn.functional.pad(inputs, pad_in, value=self.pad)
        n, k = outputs.shape[0], negatives.shape[1]
        if self.config.sg:
            h = torch.index_select(self.input, 0, inputs, out=self._buffer("h", (n, D)))
        else:
            h = self.encode_inputs(inputs)
        o = torch.index_select(self.output, 0, outputs, out=self._buffer("o", (n, D)))
        nv = torch.index_select(
            self.output, 0, negatives.reshape(-1), out=self._buffer("nv", (n // G * k, D))
        ).view(n // G, k, D)
        hg = h.view(n // G, G, D)
        pos = torch.einsum("nd,nd->n", h, o)
        neg = torch.bmm(hg, nv.transpose(1, 2))  # (n/G, G, k)
        logsig = nn.functional.logsigmoid
        loss = -(logsig(pos).mean() + logsig(-neg).sum(-1).mean())
        # d(-loss)/d(score): 1 - σ(s) for the true word, -σ(s) for noise; times lr
        g_pos = torch.sigmoid(pos).neg_().add_(1).mul_(lr)[:, None]
        g_neg = torch.sigmoid(neg).mul_(-lr)
        grad_nv = torch.bmm(g_neg.transpose(1, 2), hg)  # (n/G, k, D)
        # in place, in an order where each buffer is read before it is overwritten:
        grad_h = o.mul_(g_pos).view(n // G, G, D).baddbmm_(g_neg, nv).view(n, D)
        grad_o = h.mul_(g_pos) if self.config.sg else h * g_pos
        self.output.index_add_(0, outputs, grad_o)
        self.output.index_add_(0, negatives.reshape(-1), grad_nv.view(-1, D))
        if self.config.sg:
            self.input.index_add_(0, inputs, grad_h)
        else:
            # word2vec.c (cbow_mean) adds the hidden gradient to every context word as is
            w = inputs.shape[1]
            self.input.index_add_(
                0, inputs.reshape(-1), grad_h[:, None, :].expand(-1, w, -1).reshape(-1, D)
            )
        self.input[self.pad] = 0
        self.output[self.pad] = 0
        return loss

    @torch.no_grad()
    def loss(
        self, inputs: torch.Tensor, outputs: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """Summed negative-sampling loss of a batch, without updating anything (validation):
        ``negatives`` is (n, k), one draw per example."""
        h = self.encode_inputs(inputs)
        pos = (h * _rows(self.output, outputs)).sum(-1)
        neg = torch.einsum("nd,nkd->nk", h, _rows(self.output, negatives))
        logsig = nn.functional.logsigmoid
        return -(logsig(pos) + logsig(-neg).sum(-1)).sum()

    # ------------------------------------------------------------------ persistence

    def save(self, out_dir: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (both tables, padding row included)."""
        return save_model_dir(self, self.config, out_dir)

    @classmethod
    def load(cls, model_dir: str | Path, map_location: str = "cpu") -> Word2Vec:
        """Load what ``save`` wrote; no Hydra, no Lightning needed."""
        return load_model_dir(cls, Word2VecConfig, model_dir, map_location)
