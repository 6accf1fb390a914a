"""Muon for a model's hidden matrices, AdamW for everything else, as one optimizer.

Muon (Jordan et al. 2024; "Muon is Scalable for LLM Training", Liu et al. 2025) replaces each
2-D hidden weight's momentum update by its nearest semi-orthogonal matrix (a Newton-Schulz
iteration), so every direction of the matrix learns at the same rate. Embeddings, the output
head and norm gains stay with AdamW, as in the modded-nanogpt records.

Two pieces on top of ``torch.optim.Muon``:

- ``Muon``: torch's, except that on CPU the Newton-Schulz iteration runs in float32. torch
  runs it in bfloat16, which a CPU without bf16 instructions (AVX2 only, as on our 2-core
  machines) emulates: measured 23x slower than float32 at the default GPT's shapes, which
  doubled the training step. Wide matrices take the iteration's Gram form (fewer
  operations, the same result to float32's precision). On a GPU torch's own step runs
  unchanged.
- ``MuonWithAdamW``: both optimizers behind one ``torch.optim.Optimizer``, because Lightning's
  automatic optimization (gradient clipping, accumulation, the LR scheduler, checkpoints)
  drives exactly one. Its ``param_groups`` are the two optimizers' own group dicts, so the
  scheduler and Lightning's ``LearningRateMonitor`` set and read them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# The Gram form of the iteration pays off once a matrix's long side exceeds this many short
# sides: its operation count breaks even at 1.5 (see gram_newton_schulz).
GRAM_ASPECT = 1.5


def newton_schulz_fp32(
    update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """torch's quintic Newton-Schulz orthogonalisation (the same coefficients and steps),
    in float32; on a matrix whose long side is over ``GRAM_ASPECT`` times its short side, in
    its Gram form (``gram_newton_schulz``), which needs fewer operations there."""
    a, b, c = coefficients
    x = update.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    # FSDP's DTensor gradients keep the direct form, which DTensor distributes correctly;
    # the Gram form gave NaN there at step 2 (tests/test_fsdp.py), most likely from its
    # in-place diagonal update of a DTensor that holds a partial sum
    if steps > 1 and x.size(1) > GRAM_ASPECT * x.size(0) and type(x) is torch.Tensor:
        x = gram_newton_schulz(x, coefficients, steps)
    else:
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def gram_newton_schulz(
    x: torch.Tensor, coefficients: tuple[float, float, float], steps: int
) -> torch.Tensor:
    """The same iteration on a wide ``x`` (m x n, m < n), carried on the m x m Gram matrix.

    Each step is X <- P(A) X with A = X X^T and P(A) = aI + bA + cA^2. Every P is a
    polynomial in the first A, so the steps compose into one m x m matrix Q, and X_k = Q X_0:
    the n-wide products happen twice (A_0 = X_0 X_0^T, then Q X_0) instead of twice per step,
    while A follows as P A P. Cost 4m^2 n + (8 steps - 6) m^3 against steps (4m^2 n + 2m^3):
    cheaper exactly when n > 1.5 m (BERT's 256 x 1024 FFN matrices: 0.55x the time). In
    float32 it is ~1e-4 from the float64 iteration on ill-conditioned updates (~1e-5 for
    the direct form; torch's bfloat16 iteration ~1e-2)."""
    a, b, c = coefficients
    gram = x @ x.T
    q: torch.Tensor | None = None
    for step in range(steps):
        p = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        p.diagonal().add_(a)
        q = p if q is None else p @ q
        if step < steps - 1:
            gram = p @ gram @ p
    assert q is not None
    return q @ x


class Muon(torch.optim.Muon):
    """``torch.optim.Muon`` with a float32 orthogonalisation on CPU (see the module's
    docstring); its state (``momentum_buffer``) and update are torch's."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if any(p.is_cuda for g in self.param_groups for p in g["params"]):
            return super().step(closure)
        # torch's own per-shape learning-rate scaling (imported here: a private helper, needed
        # only on this path, so an image whose torch moved it still trains on GPU)
        from torch.optim._muon import _adjust_lr

        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = float(group["lr"]), group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz_fp32(
                    update, group["ns_coefficients"], group["ns_steps"], group["eps"]
                )
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-_adjust_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer object over a ``Muon`` and an ``AdamW`` that share no parameter.

    ``param_groups`` lists the Muon groups first, then the AdamW groups (the same dicts the
    two optimizers read), and ``state`` both optimizers' states, so ``state_dict`` is
    torch's own format, which FSDP's distributed checkpoint also reads and writes; a
    checkpoint resumes each optimizer exactly."""

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW):
        self.muon, self.adamw = muon, adamw
        params = [p for o in (muon, adamw) for g in o.param_groups for p in g["params"]]
        super().__init__(params, {})
        self.param_groups = muon.param_groups + adamw.param_groups

    @property  # type: ignore[override]
    def state(self) -> dict:  # what Lightning moves between devices
        return {**self.muon.state, **self.adamw.state}

    @state.setter
    def state(self, value: Any) -> None:  # torch.optim.Optimizer.__init__ assigns it
        pass

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Torch's format (what ``state_dict`` gives: state by parameter index, groups in
        order, Muon's first), split back into the two optimizers."""
        groups, n_muon = state_dict["param_groups"], len(self.muon.param_groups)
        for optimizer, saved in ((self.muon, groups[:n_muon]), (self.adamw, groups[n_muon:])):
            index = {old: new for new, old in enumerate(i for g in saved for i in g["params"])}
            optimizer.load_state_dict(
                {
                    "state": {index[i]: v for i, v in state_dict["state"].items() if i in index},
                    "param_groups": [
                        {**g, "params": [index[i] for i in g["params"]]} for g in saved
                    ],
                }
            )
        self.param_groups = self.muon.param_groups + self.adamw.param_groups
