"""Input sizes and their bounds: the one parser of a size for the whole code base.

A size is ``32``, ``"32"``, ``"64,48"``, ``"64x48"`` or ``[64, 48]`` (height, width). Every size and image
channel count is bounded (``MAX_SIDE`` px per side, ``MAX_CHANNELS`` channels), because a model is run at
the size: a file that asks for 100000 x 100000 px would make the analysis allocate about 120 GB. The
bounds are lifted for a block of code with ``unbounded()`` (the CLI's ``--allow-large``). The classes of a
head are bounded too (``MAX_CLASSES``, always: 3 million classes make a head of gigabytes), wherever the
count comes from (an option, a recipe, a model file, a model argument).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .._errors import InputSizeError
from .._untrusted import shown

Size = tuple[int, int]

MAX_SIDE = 2048
MAX_CHANNELS = 64
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Limits:
    """The largest input side and image channel count accepted; None: unbounded."""

    max_side: int | None = MAX_SIDE
    max_channels: int | None = MAX_CHANNELS


_DEFAULT = Limits()
_LIMITS: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("rewriter_limits", default=None)
_SIZE = re.compile(r"^\s*(\d+)\s*(?:[,x×]\s*(\d+)\s*)?$")
LIFT_HINT = "lift it with rewriter.analysis.unbounded()"


def limits() -> Limits:
    """The bounds in force."""
    return _LIMITS.get() or _DEFAULT


@contextlib.contextmanager
def unbounded() -> Iterator[None]:
    """Accept any input size and channel count inside the block (``--allow-large``)."""
    token = _LIMITS.set(Limits(None, None))
    try:
        yield
    finally:
        _LIMITS.reset(token)


def parse_size(value: int | str | Sequence[int], what: str = "input size", *, bounded: bool = True) -> Size:
    """``32`` or ``"32"`` -> (32, 32); ``"64,48"``, ``"64x48"`` or ``[64, 48]`` -> (64, 48) as (height, width).

    Raises:
        InputSizeError: not a size, not positive, or (``bounded``) larger than the bound in force.

    Example:
        >>> parse_size("64x48"), parse_size(32), parse_size([64, 48])
        ((64, 48), (32, 32), (64, 48))
    """
    size = _pair(value)
    if size is None or min(size) <= 0:
        raise InputSizeError(
            f"{what}: expected a positive size like 32, 64,48, 64x48 or [64, 48]; got {_shown(value)}",
            param=_param(what),
        )
    side = limits().max_side
    if bounded and side is not None and max(size) > side:
        raise InputSizeError(
            f"{what}: {size[0]}x{size[1]} exceeds the bound of {side} px per side; {LIFT_HINT}",
            param=_param(what, "unbounded"),
        )
    return size


def check_channels(value: object, what: str = "in_channels") -> int:
    """A positive image channel count within the bound in force.

    Raises:
        InputSizeError: not a positive int, or larger than the bound.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputSizeError(
            f"{what}: expected a positive number of image channels; got {_shown(value)}", param=_param(what)
        )
    bound = limits().max_channels
    if bound is not None and value > bound:
        raise InputSizeError(
            f"{what}: {value} exceeds the bound of {bound} channels; {LIFT_HINT}",
            param=_param(what, "unbounded"),
        )
    return value


def check_classes(value: object, what: str = "num_classes") -> int:
    """A positive class count of at most ``MAX_CLASSES``.

    Raises:
        InputSizeError: not a positive int, or more than the bound.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputSizeError(
            f"{what}: expected a positive number of classes; got {_shown(value)}", param=_param(what)
        )
    if value > MAX_CLASSES:
        raise InputSizeError(f"{what}: {value} classes exceed the bound of {MAX_CLASSES}", param=_param(what))
    return value


def _pair(value: object) -> Size | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value, value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            return None
        h = int(match.group(1))
        return h, int(match.group(2)) if match.group(2) is not None else h
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    return None


def _param(what: str, *more: str) -> tuple[str, ...]:
    """The parameters a message names: ``what`` where it is a parameter's name (not ``input size``)."""
    return ((what,) if what.isidentifier() else ()) + more


def _shown(value: object) -> str:
    return shown(value, 60)
