"""What every entry point shares: one-line errors for problems the user can fix, and the
process-wide settings every stage honours."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from llmworks.errors import LlmworksError, Preempted, disk_full, disk_full_message
from llmworks.tracking.runs import logger_config

T = TypeVar("T")
log = logging.getLogger("llmworks")


# Messages that tell a user nothing they can act on, and only these: a stage's own output and
# every other warning stay.
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # Lightning's own use of a deprecated torch API
    # a new run replaces the files of an older one in runs/<family>/ at its first checkpoint
    r"Checkpoint directory .* exists and is not empty",
    # resuming mid-epoch is handled: the samplers skip the batches already trained
    r"You're resuming from a checkpoint that ended before the epoch ended",
    # validation metrics are reduced over the processes by their scorers (TokenMeans)
    r"It is recommended to use `self.log\(.*sync_dist=True\)`",
)


def quiet_known_noise() -> None:
    """Silence gensim's per-step INFO lines, Lightning's advertisement for its cloud logger
    and the warnings above."""
    logging.getLogger("gensim").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()
    )
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def lightning_lines_once() -> None:
    """Lightning's loggers as Lightning sets them up when it loads before logging is
    configured: a handler of their own, not passed on. Stages import Lightning after
    ``run_stage`` has configured logging (their settings are typed first), and then
    Lightning leaves its loggers propagating: each line ("GPU available: ...") would print
    twice, through the ``lightning`` package's "INFO:" handler and through ours."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler())
            logger.propagate = False


def threads_setting(value: object) -> int:
    """``threads`` as a count: a whole number >= 1, or one line that names the key (a word or
    a negative count would otherwise reach torch or the tokenizers' thread pool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LlmworksError(f"threads={value!r}: expected a whole number (null: torch's default)")
    if value < 1:
        raise LlmworksError(f"threads={value}: must be >= 1 (null: torch's default)")
    return value


def set_threads(threads: int) -> None:
    """Caps torch's threads and the tokenizers' (Rust) threads. Torch is not imported for
    this: the stages that need no tensors (corpus, tokenizers, encode, task, report) start
    ~1.5 s sooner without it, so torch reads the cap from ``OMP_NUM_THREADS`` when a stage
    imports it later, and takes it directly when the stage module already has."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def run_stage(stage: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run a stage; a user error exits with status 2 and its message, not a stack trace.
    ``threads`` caps torch's and the tokenizers' threads (several stages or sweep workers
    sharing a machine then do not oversubscribe its cores)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    lightning_lines_once()
    quiet_known_noise()
    try:
        if cfg.threads:  # null or 0: torch's default
            set_threads(threads_setting(cfg.threads))
        logger_config(cfg)  # a bad logger setting fails before any work
        return stage(cfg)
    except Preempted as exc:
        print(f"llmworks: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)
    except LlmworksError as exc:
        print(f"llmworks: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as exc:
        full = disk_full(exc)
        if full is None:
            raise
        print(f"llmworks: error: {disk_full_message(full)}", file=sys.stderr, flush=True)
        sys.exit(2)
