"""The optimizer of every Transformer stage -- AdamW with decoupled weight decay on matrices
only, or Muon for the hidden matrices and AdamW for the rest -- and its schedule: linear warmup,
then cosine decay or warmup-stable-decay."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmworks.domains import at_least, fraction, positive
from llmworks.training.muon import Muon, MuonWithAdamW

# the learning rate of the first parameter group (the weight matrices, whichever optimizer
# takes them) as Lightning's LearningRateMonitor names it for the scheduler named "lr" below
LOGGED_LR = "lr/pg1"
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class OptimConfig:
    """A family's ``optim`` section (``conf/<family>/*.yaml``). ``name: muon`` trains the
    hidden weight matrices with Muon at the same ``lr`` and ``weight_decay`` (torch's
    ``match_rms_adamw`` scaling makes AdamW's values fit), momentum ``muon_momentum`` and
    ``muon_ns_steps`` Newton-Schulz iterations (torch's 5; each costs BERT's default ~3% of a
    step on CPU, so fewer trade orthogonality for time).

    ``schedule``: after the warmup, ``cosine`` decays to ``min_lr_ratio`` over the remaining
    steps; ``wsd`` (warmup-stable-decay, the modded-nanogpt records' trapezoid) holds the peak
    and decays linearly to ``min_lr_ratio`` over the last ``cooldown`` share of the steps
    (``cooldown: 1.0`` is the one-cycle of Cramming: straight down from the warmup)."""

    name: str
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    warmup_steps: int
    min_lr_ratio: float
    muon_momentum: float
    muon_ns_steps: int
    schedule: str
    cooldown: float

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"name={self.name!r}: expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: expected one of {SCHEDULES}")
        fraction(closed=True, cooldown=self.cooldown)
        fraction(muon_momentum=self.muon_momentum)
        at_least(1, muon_ns_steps=self.muon_ns_steps)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        positive(lr=self.lr, eps=self.eps)
        at_least(0, weight_decay=self.weight_decay, warmup_steps=self.warmup_steps)
        fraction(closed=True, min_lr_ratio=self.min_lr_ratio)
        fraction(beta1=self.betas[0], beta2=self.betas[1])


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decay for the weight matrices of linear layers, none for norms, biases
    and embeddings (decaying those only pulls scales and lookup rows towards zero)."""
    no_decay_types = (nn.Embedding,)
    decay, no_decay, seen = [], [], set()
    for mod in module.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue  # tied weights appear twice; an embedding owns them
            seen.add(id(p))
            is_matrix = p.ndim >= 2 and name == "weight" and not isinstance(mod, no_decay_types)
            (decay if is_matrix else no_decay).append(p)
    # a weight tied to an embedding was first met in the embedding when it comes first; if the
    # linear came first it landed in `decay`: move it so embeddings never decay
    emb = {id(m.weight) for m in module.modules() if isinstance(m, no_decay_types)}
    no_decay += [p for p in decay if id(p) in emb]
    decay = [p for p in decay if id(p) not in emb]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier: linear from ~0 to 1 over ``warmup_steps``, then cosine down
    to ``min_lr_ratio`` at ``max_steps`` (and flat after)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_stable_decay(
    step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float, cooldown: float
) -> float:
    """Learning-rate multiplier: linear from ~0 to 1 over ``warmup_steps``, 1 until the last
    ``cooldown`` share of ``max_steps``, then linear down to ``min_lr_ratio`` at ``max_steps``
    (and flat after). The decay never starts before the warmup has ended."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    start = max(warmup_steps, max_steps - round(cooldown * max_steps))
    progress = min(1.0, max(0, step - start) / max(1, max_steps - start))
    return 1 - (1 - min_lr_ratio) * progress


def lr_multiplier(optim: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """The schedule ``optim.schedule`` names, as a function of the optimizer step."""
    if optim.schedule == "wsd":
        return lambda step: warmup_stable_decay(
            step, optim.warmup_steps, max_steps, optim.min_lr_ratio, optim.cooldown
        )
    return lambda step: warmup_cosine(step, optim.warmup_steps, max_steps, optim.min_lr_ratio)


def use_fused_adamw(on_cuda: bool, trainer: Any | None = None) -> bool:
    """Fused AdamW (one kernel for all parameters) needs CUDA weights. Lightning's mixed
    precision plugins refuse to clip gradients for an optimizer that unscales them itself, as
    the fused one does, so with AMP and ``gradient_clip_val`` the foreach kernels are used."""
    if not on_cuda:
        return False
    if trainer is None:
        return True
    from lightning.pytorch.plugins.precision import MixedPrecision

    clipping = bool(trainer.gradient_clip_val)
    return not (clipping and isinstance(trainer.precision_plugin, MixedPrecision))


def configure_optimizer(
    module: nn.Module,
    optim: OptimConfig,
    max_steps: int,
    trainer: Any | None = None,
    adamw_only: tuple[nn.Parameter, ...] = (),
) -> dict[str, Any]:
    """What a ``LightningModule.configure_optimizers`` returns: the optimizer ``optim.name``
    names and the schedule ``optim.schedule`` names, stepped every optimizer step. Pass the
    ``trainer`` so the fused AdamW kernel is only chosen where Lightning can use it.

    With Muon, the decayed weight matrices go to Muon, except ``adamw_only`` (an untied output
    head: Muon is for hidden layers) and embeddings (never in the decayed group)."""
    on_cuda = torch.cuda.is_available() and next(module.parameters()).is_cuda
    groups = param_groups(module, optim.weight_decay)

    def adamw(param_groups: list[dict[str, Any]]) -> torch.optim.AdamW:
        return torch.optim.AdamW(
            param_groups,
            lr=optim.lr,
            betas=optim.betas,
            eps=optim.eps,
            fused=use_fused_adamw(on_cuda, trainer) or None,
        )

    if optim.name == "muon":
        keep = {id(p) for p in adamw_only}
        hidden = [p for p in groups[0]["params"] if id(p) not in keep]
        groups[0]["params"] = [p for p in groups[0]["params"] if id(p) in keep]
        muon = Muon(
            hidden,
            lr=optim.lr,
            weight_decay=optim.weight_decay,
            momentum=optim.muon_momentum,
            ns_steps=optim.muon_ns_steps,
            adjust_lr_fn="match_rms_adamw",
        )
        opt: torch.optim.Optimizer = MuonWithAdamW(muon, adamw([g for g in groups if g["params"]]))
    else:
        opt = adamw(groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(optim, max_steps))
    return {
        "optimizer": opt,
        "lr_scheduler": {"scheduler": sched, "interval": "step", "name": "lr"},
    }


class MuonOrAdamWOptimizers:
    """``configure_optimizers`` for a ``LightningModule`` with ``model`` and ``optim`` (an
    ``OptimConfig``): ``configure_optimizer`` over the trainer's ``max_steps``. A family
    names the matrices that stay with AdamW under Muon by overriding ``adamw_only``."""

    def adamw_only(self) -> tuple[torch.Tensor, ...]:
        """Matrices that stay with AdamW under Muon beyond embeddings, norms and biases."""
        return ()

    def configure_optimizers(self) -> dict[str, Any]:
        trainer = self.trainer  # type: ignore[attr-defined]
        return configure_optimizer(
            self.model,  # type: ignore[attr-defined]
            self.optim,  # type: ignore[attr-defined]
            trainer.max_steps,
            trainer,
            adamw_only=self.adamw_only(),
        )
