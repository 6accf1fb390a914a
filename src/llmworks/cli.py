"""What every entry point shares: one-line errors for problems the user can fix."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from llmworks.errors import LlmworksError

T = TypeVar("T")
log = logging.getLogger("llmworks")


def run_stage(stage: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a stage; a user error exits with status 2 and its message, not a stack trace."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    try:
        return stage(cfg)
    except LlmworksError as exc:
        print(f"llmworks: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
