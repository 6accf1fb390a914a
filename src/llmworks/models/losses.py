"""Cross-entropy of a linear output head without the ``(N, vocab)`` logits.

A language model's head projects N hidden states onto the whole vocabulary and takes the
log-softmax. On CPU, at the default GPT's size (N = 2,048 positions, 8,192 tokens, width
128), holding those logits, their log-softmax and then their gradient, and zeroing that
gradient, took more of a training step than all four Transformer blocks' attention
(``bench/README.md``, "Where a training step's time goes"). Done a slice of rows at a
time, each slice's logits stay in cache, and because the loss is the end of the graph the
slice's gradients can be taken at once (as Liger-Kernel's fused linear cross-entropy does):
the backward pass only scales them. GPT uses it on CPU; on a GPU, where ``torch.compile``
fuses the plain loss and a Python loop over slices would unroll into its graph, the whole
logits stay until the GPU check has measured this path there.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # rows per slice: 256 x 8,192 float32 logits = 8 MiB (fastest here of 256-1,024)


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``; gradients are computed
    in the forward pass, slice by slice, and saved for the backward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        chunk_rows: int,
    ) -> torch.Tensor:
        loss, grad_hidden, grad_weight = _sliced(
            hidden, weight, targets, ignore_index, chunk_rows, with_grad=True
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad_hidden * grad_loss, grad_weight * grad_loss, None, None, None


def _sliced(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_rows: int,
    with_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The mean loss and (``with_grad``) its gradients with respect to ``hidden`` and
    ``weight``. Logits, their softmax and the weight's gradient are at least float32 (as
    the plain ``F.cross_entropy(logits.float(), ...)``); the matrix products run in
    ``hidden``'s dtype (bf16 under autocast)."""
    exact = torch.promote_types(hidden.dtype, torch.float32)
    with torch.autocast(hidden.device.type, enabled=False):
        w = weight.to(hidden.dtype)
        kept = targets != ignore_index
        count = kept.sum().clamp(min=1).to(exact)
        total = torch.zeros((), dtype=exact, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if with_grad else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=exact, device=weight.device) if with_grad else None
        )
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            h, t, keep = hidden[rows], targets[rows], kept[rows]
            logits = (h @ w.t()).to(exact)
            safe = torch.where(keep, t, torch.zeros_like(t)).unsqueeze(1)
            picked = logits.gather(1, safe).squeeze(1)
            # one pass each, in place: shift by the row maximum, exponentiate, sum
            peak = logits.amax(dim=-1, keepdim=True)
            unnormalised = logits.sub_(peak).exp_()
            norm = unnormalised.sum(dim=-1)
            total += ((peak.squeeze(1) + norm.log() - picked) * keep).sum()
            if grad_hidden is None or grad_weight is None:
                continue
            # d(mean loss)/d(logits) = (softmax - one-hot) / count, on kept rows only
            weight_of_row = keep / count
            grad = unnormalised.mul_((weight_of_row / norm).unsqueeze(1))
            grad.scatter_add_(1, safe, -weight_of_row.unsqueeze(1).to(grad.dtype))
            grad_low = grad.to(hidden.dtype)
            grad_hidden[rows] = grad_low @ w
            if grad_low.dtype == grad_weight.dtype:
                grad_weight.addmm_(grad_low.t(), h)
            else:
                grad_weight += (grad_low.t() @ h).to(exact)
        loss = total / count
    return loss, grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets, ignore_index=...)`` (mean over the kept
    targets; 0 when none is kept) for ``hidden`` ``(N, d)``, ``weight`` ``(vocab, d)`` and
    ``targets`` ``(N,)``, never holding more than ``chunk_rows`` rows of logits."""
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, chunk_rows)
    return _sliced(hidden, weight, targets, ignore_index, chunk_rows, with_grad=False)[0]
