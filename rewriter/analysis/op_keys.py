"""How the tables of receptive-field rules and FLOP formulas know an op: torch's own ops by name, any other
function by the callable itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: libraries whose functions are known by name: there one op has several spellings (``torch.cat``,
#: ``Tensor.cat``; ``operator.add`` and ``Tensor.__add__``; ``torch.conv2d`` is ``F.conv2d``), so a name is one op
LIBRARIES = frozenset({"torch", "torchvision", "timm", "operator", "_operator", "builtins", "math"})

OpKey = str | Callable[..., Any]


def op_key(op: Callable[..., Any] | str) -> OpKey:
    """The key of ``op`` in the tables: a tensor method (fx names it by a string) and a function of torch or
    the libraries above by its name (torch's C methods carry no module: theirs too); any other callable by
    itself, so that a function of your own named ``linear`` or ``pad`` is never taken for torch's."""
    if isinstance(op, str):
        return op
    module = getattr(op, "__module__", None)
    name = getattr(op, "__name__", None)
    if name and (module is None or module.split(".")[0] in LIBRARIES):
        return name
    return op


def describe(key: OpKey) -> str:
    """A key for a message: the name, or the callable's qualified name."""
    if isinstance(key, str):
        return f"'{key}'"
    return f"{getattr(key, '__module__', '?')}.{getattr(key, '__qualname__', repr(key))}"
