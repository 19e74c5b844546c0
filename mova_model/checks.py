"""The one value check shared by requests and configs: a number inside its allowed range.

Standard library only: `request.py` (built without torch) uses it as well as `config.py`.
"""

from __future__ import annotations

import math

from mova_model.errors import MovaError


def check_range(name: str, value: float, low: float, high: float, error: type[MovaError], *,
                low_open: bool = False) -> None:
    """Raise `error` (one line, naming the field and the range) unless low <= value <= high
    (low < value with low_open) and the value is finite."""
    below = value <= low if low_open else value < low
    if not math.isfinite(value) or below or value > high:
        if math.isinf(high):
            raise error(f"{name}={value!r} must be {'>' if low_open else '>='} {low:g}")
        bracket = "(" if low_open else "["
        raise error(f"{name}={value!r} must be in {bracket}{low:g}, {high:g}]")
