"""Checks of LDALoss's hyper-parameters: a bad value fails at construction, naming the argument.

Without them ``gamma=-1`` or ``beta=float("nan")`` would train to the end on NaN losses.
"""
import math
from numbers import Real
from typing import Optional


def finite_number(name: str, value, minimum: Optional[float] = None) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is a finite real >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def positive_integer(name: str, value) -> int:
    """``value`` as an int; ValueError naming ``name`` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, Real) or float(value) != int(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
