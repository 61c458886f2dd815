"""Declared ranges for the numeric fields of the lab's configuration records (``TrainConfig``,
``StudySetup``): each field states its bounds once, next to its default, and ``check_ranges`` refuses a
value outside them with one line that names the field, the bound and the value received."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .._errors import RewriterError


def bounded(default: Any, *, low: float | None = None, high: float | None = None, open_low: bool = False,
            open_high: bool = False) -> Any:  # fmt: skip
    """A dataclass field with ``default`` whose value (when not None) must lie in the declared range:
    ``low <= value <= high``, a strict inequality on an ``open_`` side; floats must be finite."""
    return dataclasses.field(default=default, metadata={"range": (low, high, open_low, open_high)})


def range_text(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    """``(1, None, False, False)`` -> ``"1 or more"``; ``(0, 1, False, True)`` -> ``"in [0, 1)"``."""
    if high is None:
        return f"above {low:g}" if open_low else f"{low:g} or more"
    if low is None:
        return f"below {high:g}" if open_high else f"{high:g} or less"
    return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def check_ranges(record: Any, error: type[RewriterError]) -> None:
    """Raise ``error`` for the first field of ``record`` whose value lies outside its declared range (or is
    not a number), naming the field as its ``param`` (the CLI writes the flag in its place)."""
    for item in dataclasses.fields(record):
        bounds = item.metadata.get("range")
        value = getattr(record, item.name)
        if bounds is None or value is None:
            continue
        name = item.name
        low, high, open_low, open_high = bounds
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(value, float) and not math.isfinite(value)):
            raise error(
                f"{name} must be a finite number {range_text(*bounds)}, got {value!r}", param=item.name
            )
        if _integer(item) and not isinstance(value, int):
            raise error(
                f"{name} must be a whole number {range_text(*bounds)}, got {value!r}", param=item.name
            )
        outside = (low is not None and (value <= low if open_low else value < low)) or (
            high is not None and (value >= high if open_high else value > high)
        )
        if outside:
            raise error(f"{name} must be {range_text(*bounds)}, got {value:g}", param=item.name)


def _integer(item: dataclasses.Field) -> bool:
    """Whether the field is annotated ``int`` (or ``int | None``), not a float."""
    annotation = str(item.type)
    return "int" in annotation and "float" not in annotation
