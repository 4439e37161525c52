"""How the report writes numbers: figures, intervals, and a value beside the limit it passed."""

from __future__ import annotations

import math
from typing import Any

#: ratios (effects) keep their trailing zeros: x1.20, not x1.2
RATIO_SPEC = "#.3g"


def num(value: Any, spec: str = ".4g") -> str:
    """A value as the report writes it: numbers with ``spec``, unknown as n/a."""
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
    except TypeError:
        pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def ci(mean: Any, low: Any, high: Any, spec: str = ".4g") -> str:
    """A mean and its interval: ``m [low, high]``, ``m [n/a]`` without one."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if isinstance(low, float) and math.isnan(low):
        return f"{num(mean, spec)} [n/a]"
    return f"{num(mean, spec)} [{num(low, spec)}, {num(high, spec)}]"


def plus_minus(mean: Any, u95: Any, dominant: Any, spec: str = ".4g") -> str:
    """A mean with its expanded uncertainty and what dominates it: ``m ± U (term)``."""
    if num(mean) == "n/a":
        return "n/a"
    if num(u95) == "n/a":
        return f"{num(mean, spec)} ± n/a"
    return f"{num(mean, spec)} ± {num(u95, '.2g')} ({dominant})"
