"""The ``trainer`` section and a family's ``train`` section, checked before Lightning loads.

Lightning itself would refuse a misspelled argument, too many CPU processes or a GPU that is
not there, but only once it is imported (~5 s into a stage's start). Each check here costs
milliseconds: the argument names are read from the source of ``lightning.Trainer`` (its
``__init__`` lists every one), so they follow the installed Lightning without importing it.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
from functools import cache
from pathlib import Path

from omegaconf import DictConfig

from llmworks.errors import LlmworksError

# the names under which a config may build Lightning's Trainer
TRAINER_TARGETS = (
    "lightning.Trainer",
    "lightning.pytorch.Trainer",
    "lightning.pytorch.trainer.Trainer",
)
# set by torchrun, SLURM or Lightning's own launchers in every process of a multi-node job
LAUNCHER_ENV = ("WORLD_SIZE", "NODE_RANK", "SLURM_NTASKS", "GROUP_RANK", "LOCAL_RANK")


def check_trainer(trainer: DictConfig, schedule: DictConfig, schedule_key: str) -> None:
    """``trainer`` (hardware, shared settings) and ``schedule`` (``<family>.train``, the
    section ``schedule_key`` names) as one set of Trainer arguments: none set twice, every
    name one that ``lightning.Trainer`` takes, and hardware this machine can give."""
    clash = sorted(set(schedule) & set(trainer) - {"_target_"})
    if clash:
        raise LlmworksError(
            f"{clash} set both in trainer and in the model's train section ({schedule_key}); "
            f"set the schedule in {schedule_key} and the hardware in trainer"
        )
    known = trainer_arguments() if str(trainer.get("_target_")) in TRAINER_TARGETS else None
    if known is not None:
        for section, keys in (("trainer", trainer), (schedule_key, schedule)):
            for key in sorted(set(keys) - {"_target_"} - known):
                near = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {section}.{near[0]}?" if near else ""
                raise LlmworksError(
                    f"{section}.{key}: lightning.Trainer takes no argument {key!r}{hint}"
                )
    check_hardware(trainer)


def check_hardware(trainer: DictConfig) -> None:
    """What Lightning would only find out late (or wait forever for), refused up front."""
    devices, nodes = trainer.devices, trainer.num_nodes
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise LlmworksError(f"trainer.num_nodes={nodes!r}: expected a whole number >= 1")
    if (
        isinstance(devices, int)
        and not isinstance(devices, bool)
        and (devices == 0 or devices < -1)
    ):
        raise LlmworksError(
            f"trainer.devices={devices}: expected a count >= 1, -1 (every GPU), 'auto' or a list"
        )
    cores = os.cpu_count() or 1
    if trainer.accelerator == "cpu" and isinstance(devices, int) and devices > cores:
        raise LlmworksError(
            f"trainer.devices={devices} CPU processes, but this machine has {cores} cores; "
            f"use trainer.devices<={cores} (trainer=ddp_cpu runs 2)"
        )
    if nodes > 1 and not any(v in os.environ for v in LAUNCHER_ENV):
        raise LlmworksError(
            f"trainer.num_nodes={nodes} needs one process per node started by a launcher "
            "(torchrun --nnodes ... --node-rank ..., or srun under SLURM); see README, Scaling"
        )
    if trainer.accelerator in ("gpu", "cuda"):
        import torch

        # device_count asks NVML, which leaves CUDA uninitialised for a forking strategy
        mps = trainer.accelerator == "gpu" and torch.backends.mps.is_available()
        if torch.cuda.device_count() == 0 and not mps:
            raise LlmworksError(
                f"trainer.accelerator={trainer.accelerator}, but torch {torch.__version__} finds "
                "no GPU on this machine; use trainer=cpu (or trainer=ddp_cpu), or install a "
                "CUDA build of torch on a machine with a GPU"
            )


@cache
def trainer_arguments() -> frozenset[str] | None:
    """The argument names of ``lightning.Trainer.__init__``, read from Lightning's source
    (None where it cannot be read: Lightning's own check then applies)."""
    spec = importlib.util.find_spec("lightning")  # a top-level name: finds, does not import
    if spec is None or not spec.submodule_search_locations:
        return None
    source = (
        Path(next(iter(spec.submodule_search_locations))) / "pytorch" / "trainer" / "trainer.py"
    )
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Trainer":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    if fn.args.kwarg is not None:  # **kwargs: any name goes
                        return None
                    args = [*fn.args.posonlyargs, *fn.args.args[1:], *fn.args.kwonlyargs]
                    return frozenset(a.arg for a in args)
    return None
