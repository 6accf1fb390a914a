"""The exceptions for problems a user can fix (bad input, bad config) and for a run stopped
from outside, so entry points can report them in one line instead of a stack trace."""

from __future__ import annotations

import signal
from pathlib import Path


class LlmworksError(RuntimeError):
    """A problem with the user's input or configuration; the message says how to fix it."""


class Preempted(LlmworksError):
    """The run was stopped by a signal after saving where it was; rerunning resumes it."""

    def __init__(self, signum: int, step: int, saved: Path | None):
        self.exit_code = 128 + signum
        where = f"saved {saved}" if saved else "nothing new saved"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} at step {step} ({where}); rerun the "
            "same command to resume"
        )
