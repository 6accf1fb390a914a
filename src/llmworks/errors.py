"""The exceptions for problems a user can fix (bad input, bad config) and for a run stopped
from outside, so entry points can report them in one line instead of a stack trace."""

from __future__ import annotations

import errno
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


FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException) -> OSError | None:
    """The "no space left" (or over-quota) error behind ``exc``, if any: libraries re-raise
    it wrapped (``datasets``, Arrow writers), so the whole cause chain is searched."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        if isinstance(cur, OSError) and cur.errno in FULL_DISK:
            return cur
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return None


def disk_full_message(err: OSError) -> str:
    where = f" writing {err.filename}" if err.filename else ""
    return (
        f"the disk is full ({err.strerror}){where}: free space, or point paths.data / "
        "paths.models / paths.runs at a larger disk, and rerun"
    )
