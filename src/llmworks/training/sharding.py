"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) under
Lightning's ``ModelParallelStrategy`` (``trainer=fsdp``): parameters, gradients and optimizer
state sharded over the data-parallel ranks, one unit per transformer block.

- ``shard`` wraps each block of ``model.blocks`` (then the root: embeddings, final norm and
  the tied head share one unit), optionally with activation checkpointing per block, with a
  mixed-precision policy (``fsdp.param_dtype`` for compute, ``fsdp.reduce_dtype`` for the
  gradient reduction);
- ``full_model`` gathers the full weights -- a collective every rank takes part in -- and
  hands rank 0 an ordinary, unsharded model to save and export.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from llmworks.errors import LlmworksError


@dataclass(frozen=True)
class FSDPConfig:
    """The ``fsdp`` section of ``conf/config.yaml`` (read only under ``trainer=fsdp``)."""

    param_dtype: str  # bfloat16 | float16 | float32: the dtype blocks compute in
    reduce_dtype: str  # the dtype gradients are reduced in
    activation_checkpointing: bool  # recompute each block's activations in backward


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def sharded(trainer: DictConfig) -> bool:
    """Whether ``trainer`` runs Lightning's ``ModelParallelStrategy`` (``trainer=fsdp``), under
    which the module's ``configure_model`` shards it."""
    strategy = trainer.get("strategy")
    return isinstance(strategy, DictConfig) and str(strategy.get("_target_", "")).endswith(
        "ModelParallelStrategy"
    )


def unshardable(what: str) -> LlmworksError:
    """The refusal of ``trainer=fsdp`` for ``what`` (a family, or a model class): FSDP here
    shards transformer blocks, and a model without them (Word2Vec's tables, which its own
    step updates in place) has nothing to shard. One text for the preflight, which knows
    the family before Lightning loads, and for ``shard``, which sees the model itself."""
    return LlmworksError(
        f"trainer=fsdp shards transformer blocks; {what} has none "
        "(its tables update in place): use trainer=ddp"
    )


def shard(model: nn.Module, mesh, cfg: FSDPConfig) -> nn.Module:
    """Shard ``model`` in place over ``mesh`` (Lightning's ``device_mesh["data_parallel"]``)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(
        param_dtype=getattr(torch, cfg.param_dtype), reduce_dtype=getattr(torch, cfg.reduce_dtype)
    )
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise unshardable(type(model).__name__)
    for i, block in enumerate(blocks):
        if cfg.activation_checkpointing:
            block = blocks[i] = checkpoint_wrapper(block)
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_model(model: nn.Module, is_global_zero: bool) -> nn.Module | None:
    """``model`` itself when it is not sharded; else its full weights in a new, unsharded
    model of the same config on rank 0 (None elsewhere). Every rank must call it."""
    if not is_sharded(model):
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    if not is_global_zero:
        return None
    full = type(model)(model.config)
    full.load_state_dict(state)
    return full.eval()
