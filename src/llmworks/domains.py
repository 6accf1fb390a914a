"""Value domains of config fields, checked when a config object is built: a size of 0 or a
rate of 2 is refused at start-up with the key's name, instead of surfacing later as a
ZeroDivisionError in a data loader or a reshape error in the first step. Raises
``ValueError``; ``llmworks.config.typed`` reports it as a one-line error under the section's
name (``gpt.model: block_size=0: must be >= 1``)."""

from __future__ import annotations

from typing import Any


def at_least(minimum: float, **values: Any) -> None:
    """Every value (None: unset, allowed) is ``>= minimum``."""
    for name, value in values.items():
        if value is not None and not value >= minimum:
            raise ValueError(f"{name}={value}: must be >= {minimum}")


def positive(**values: Any) -> None:
    """Every value (None: unset, allowed) is ``> 0``."""
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value}: must be > 0")


def fraction(*, closed: bool = False, **values: Any) -> None:
    """Every value is in ``[0, 1)`` (a dropout or masking rate), or ``[0, 1]`` with
    ``closed``."""
    for name, value in values.items():
        ok = 0 <= value <= 1 if closed else 0 <= value < 1
        if value is not None and not ok:
            raise ValueError(f"{name}={value}: must be in [0, {'1]' if closed else '1)'}")
