"""Argument checks shared by the package: one wording for "expected an integer >= 1" and its kin.

Every check raises ``ValueError`` naming the argument (a recipe's dotted key, or a function's
parameter) and what was expected. :class:`Bounds` is the range of a recipe field, declared beside its
type (``Annotated[int, Bounds(1)]``) and checked when the recipe is loaded (:mod:`reidlib.config`).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """A closed or open interval; ``None`` leaves a side unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: float) -> None:
        if not self.contains(value):
            raise ValueError(f"{name}: expected a value {self}, got {value!r}")


def check_int(name: str, value: Any, low: int | None = None, why: str = "") -> int:
    """``value`` as a Python int (numpy integers too, never a bool), at least ``low`` if given."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if low is not None and value < low:
        raise ValueError(f"{name}: expected an integer >= {low}{why}, got {value}")
    return value


def check_number(name: str, value: Any, bounds: Bounds | None = None) -> float:
    """``value`` as a float (a real number, never a bool), inside ``bounds`` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    if bounds is not None:
        bounds.check(name, value)
    return value


def check_fraction(name: str, value: float, *, closed: bool) -> None:
    """Ratios live in [0, 1) (erasing everything is meaningless); thresholds in [0, 1]."""
    check_number(name, value, Bounds(0.0, 1.0, high_open=not closed))


def check_flag(name: str, value: bool) -> None:
    """Switches must be true booleans: a YAML string such as "no" would otherwise count as true."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
