"""What every entry point shares: one-line errors for problems the user can fix, and the
process-wide settings every stage honours."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import torch
from omegaconf import DictConfig

from llmworks.errors import LlmworksError

T = TypeVar("T")
log = logging.getLogger("llmworks")


def run_stage(stage: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a stage; a user error exits with status 2 and its message, not a stack trace.
    ``threads`` caps torch's intra-op threads (several stages or sweep workers sharing a
    machine then do not oversubscribe its cores)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        return stage(cfg)
    except LlmworksError as exc:
        print(f"llmworks: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
