"""What a strategy will do to a model: printable edits with reasons, and typed data for the pipeline.

A ``Plan`` is plain data throughout, so a dry run can print it and it round-trips through YAML. The fields
the pipeline's checks read are typed attributes (``new_modules``, ``moved``, ``num_classes``, ``cut``);
what the strategy's own ``apply()`` needs is its ``payload``, a frozen dataclass the strategy declares as
``Strategy.payload_type``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args, get_origin


@dataclass(frozen=True)
class Edit:
    """One change a plan makes: what happens to which layer, and why."""

    action: str  # remove, replace, set, attach, keep, ...
    target: str  # a layer or module name
    detail: str  # what exactly, e.g. "stride 2x2 -> 1x1"
    reason: str  # why, in the papers' terms

    def format(self) -> str:
        return f"{self.action:<8} {self.target}: {self.detail}" + (
            f"  ({self.reason})" if self.reason else ""
        )


@dataclass(frozen=True)
class Moved:
    """Kept modules that now live under another path: ``new`` in the new model was ``old`` in the input."""

    new: str
    old: str


@dataclass(frozen=True)
class Cut:
    """A truncation: the new model's ``prefix_module`` computes what node ``at`` of the input model did."""

    at: str
    prefix_module: str


@dataclass(frozen=True)
class Plan:
    """What a strategy will do to a model.

    Attributes:
        new_modules: module paths in the new model whose parameters are new (a fresh head): invariant 2
            does not compare them with the input model.
        moved: kept modules that live under another path in the new model.
        num_classes: the class outputs the new model has, where the plan sets them (a new head).
        cut: for a truncation, where the kept prefix must reproduce the input model (invariant 3).
        payload: the strategy's own record of what ``apply()`` needs.
    """

    strategy: str
    params: Mapping[str, Any]
    edits: tuple[Edit, ...] = ()
    notes: tuple[str, ...] = ()
    payload: Any = None
    new_modules: tuple[str, ...] = ()
    moved: tuple[Moved, ...] = ()
    num_classes: int | None = None
    cut: Cut | None = None

    @property
    def is_noop(self) -> bool:
        return not self.edits

    def old_key(self, key: str) -> str:
        """The input model's name of a kept tensor ``key`` of the new model."""
        for move in self.moved:
            if key.startswith(move.new):
                return move.old + key[len(move.new) :]
        return key

    def is_new(self, key: str) -> bool:
        """Whether tensor ``key`` of the new model belongs to a module the plan declares new."""
        return any(key == m or key.startswith(m + ".") for m in self.new_modules)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], payload_type: type | None = None) -> Plan:
        """Rebuild a plan from ``to_dict()``'s output; ``payload_type`` is the strategy's (by default looked
        up in the strategy registry by the plan's strategy name)."""
        if payload_type is None and data.get("payload") is not None:
            from .registry import get_strategy

            payload_type = get_strategy(data["strategy"]).payload_type
        plain = {**data, "payload": None}
        plan = from_plain(cls, plain)
        payload = data.get("payload")
        return dataclasses.replace(
            plan, payload=from_plain(payload_type, payload) if payload_type else payload
        )

    def format(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        lines = [f"{self.strategy}({params})"]
        lines += [f"  {e.format()}" for e in self.edits] or ["  no change"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as plain dicts and lists (what YAML and JSON write)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def from_plain(annotation: Any, value: Any) -> Any:
    """The inverse of ``to_plain`` for a value of type ``annotation`` (dataclasses, tuples, dicts, unions
    with None), read from the type hints; anything else is returned as it is."""
    if value is None:
        return None
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = get_args(annotation)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(from_plain(item, v) for v in value)
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        item = get_args(annotation)[1] if get_args(annotation) else Any
        return {k: from_plain(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(value, Mapping):
        hints = typing.get_type_hints(annotation)
        names = {f.name for f in dataclasses.fields(annotation)}
        return annotation(**{k: from_plain(hints[k], v) for k, v in value.items() if k in names})
    return value
