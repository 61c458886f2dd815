"""Strategies: the base class, the plan they return, and the registry that finds them by name.

A strategy is a frozen dataclass whose fields are its recipe parameters. ``plan()`` looks at the model and
its analysis and returns a ``Plan``: printable edits with reasons (a dry run), plus the plain data that
``apply()`` needs, so a plan can be written to YAML, read back and applied. ``apply()`` changes a copy of the
model that the pipeline (``rewriter.rewrite``) hands it; the pipeline then checks the invariants.

Strategies register under one name each. The built-in ones, and any third party's, are found through the
``rewriter.strategies`` entry-point group, so ``rewriter`` itself never imports ``strategies``:

    [project.entry-points."rewriter.strategies"]
    my-rewrite = "mypkg.rewrites:MyRewrite"
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

from torch import nn

from .._errors import RecipeError, RewriteError, close_matches
from ..analysis.analyzer import Analysis

ENTRY_POINT_GROUP = "rewriter.strategies"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Edit:
    """One change a plan makes: what happens to which layer, and why."""

    action: str  # remove, replace, set, attach, keep
    target: str  # a layer or module name
    detail: str  # what exactly, e.g. "stride 2x2 -> 1x1"
    reason: str  # why, in the papers' terms

    def format(self) -> str:
        return f"{self.action:<8} {self.target}: {self.detail}" + (
            f"  ({self.reason})" if self.reason else ""
        )


@dataclass(frozen=True)
class Plan:
    """What a strategy will do to a model. Plain data throughout, so it round-trips through YAML.

    ``data`` holds what ``apply()`` needs; two keys are read by the pipeline's checks:
    ``new_modules`` (module paths in the new model whose parameters are new, e.g. a fresh head) and
    ``moved`` (``{"new_prefix": "old_prefix"}``: kept modules now live under another path).
    """

    strategy: str
    params: dict[str, Any]
    edits: tuple[Edit, ...] = ()
    notes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def is_noop(self) -> bool:
        return not self.edits

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "params": dict(self.params),
            "edits": [dataclasses.asdict(e) for e in self.edits],
            "notes": list(self.notes),
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            strategy=data["strategy"],
            params=dict(data.get("params") or {}),
            edits=tuple(Edit(**e) for e in data.get("edits") or ()),
            notes=tuple(data.get("notes") or ()),
            data=dict(data.get("data") or {}),
        )

    def format(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        lines = [f"{self.strategy}({params})"]
        lines += [f"  {e.format()}" for e in self.edits] or ["  no change"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Context:
    """What a strategy may look at besides the model: the target size, the head, and the analysis."""

    input_size: tuple[int, int]
    num_classes: int
    analysis: Analysis
    in_channels: int = 3
    pretrained: bool = False  # the model's weights were loaded (a new head will be untrained)
    leaf_classes: tuple[type, ...] = ()  # modules to trace as opaque
    data: Any = None  # a rewriter.data.DataSource, for strategies that measure the model on data
    replay: bool = False  # rebuilding a saved model whose weights are loaded next: build, do not train
    notes: list[str] = field(default_factory=list)  # what ``apply`` measured, for the report


class Strategy:
    """Base class of the strategies; subclasses are frozen dataclasses registered with a ``name``."""

    name: ClassVar[str] = ""

    def plan(self, model: nn.Module, context: Context) -> Plan:
        raise NotImplementedError

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        """Change ``model`` (the pipeline's own copy) as ``plan`` says and return the new model."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def refuse(self, reason: str) -> RewriteError:
        """The error to raise when the strategy does not apply to a model, with the reason."""
        return RewriteError(reason)


StrategyClass = type[Strategy]
_REGISTRY: dict[str, StrategyClass] = {}
_ENTRY_POINTS_LOADED = False


def register_strategy(cls: StrategyClass) -> StrategyClass:
    """Register a strategy class under ``cls.name`` (for code that does not use the entry-point group)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"strategy {cls.__qualname__} must be a dataclass whose fields are its parameters")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"two strategies are named '{cls.name}': {existing.__qualname__} and {cls.__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


_BROKEN: dict[str, str] = {}  # entry points that failed to load, with the reason


def _load_entry_points() -> None:
    """Load each entry point once; a broken third-party one is remembered, not fatal to the others."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if getattr(cls, "name", None) != entry.name:
                raise ValueError(f"it loads {cls!r}, whose name is not '{entry.name}'")
            register_strategy(cls)
        except Exception as err:
            _BROKEN[entry.name] = f"{entry.value}: {type(err).__name__}: {err}"
            logger.warning("strategy entry point '%s' does not load (%s)", entry.name, _BROKEN[entry.name])


def list_strategies() -> list[str]:
    """Names of all registered strategies, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get_strategy(name: str) -> StrategyClass:
    """The strategy class registered as ``name``.

    Raises:
        RecipeError: no strategy has that name; the message lists close matches.
    """
    _load_entry_points()
    if name in _BROKEN:
        raise RecipeError(f"strategy '{name}' is installed but does not load: {_BROKEN[name]}")
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = close_matches(name, _REGISTRY) or f"; known strategies: {', '.join(sorted(_REGISTRY))}"
        raise RecipeError(f"unknown strategy '{name}'{hint}") from None


@dataclass(frozen=True)
class Parameter:
    """One recipe parameter of a strategy, for ``rewriter strategies`` and for validation."""

    name: str
    annotation: Any
    default: Any
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def type_text(self) -> str:
        return _type_text(self.annotation)


def parameters(cls: StrategyClass) -> list[Parameter]:
    hints = typing.get_type_hints(cls)
    return [
        Parameter(f.name, hints[f.name], f.default, f.metadata.get("help", ""))
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    ]


def summary(cls: StrategyClass) -> str:
    """First line of the strategy's docstring."""
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def build_strategy(name: str, params: Mapping[str, Any] | None, *, where: str) -> Strategy:
    """Validate ``params`` against the strategy's fields and build it; errors name ``where`` they are.

    Raises:
        RecipeError: unknown strategy, unknown or missing parameter, or a value of the wrong type.
    """
    try:
        cls = get_strategy(name)
    except RecipeError as err:
        raise RecipeError(f"{where}: {err}") from None
    params = dict(params or {})
    fields = {p.name: p for p in parameters(cls)}
    for key in params:
        if key not in fields:
            hint = close_matches(key, fields) or f"; {name} takes {', '.join(fields) or 'no parameters'}"
            raise RecipeError(f"{where}.{key}: unknown parameter{hint}")
    values = {}
    for param in fields.values():
        if param.name in params:
            values[param.name] = coerce(params[param.name], param.annotation, f"{where}.{param.name}")
        elif param.required:
            raise RecipeError(f"{where}.{param.name}: missing required parameter ({param.type_text})")
    return cls(**values)


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a parameter annotation (int, float, str, bool, Literal, unions with None)."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        choices = get_args(annotation)
        if value in choices:
            return value
        hint = close_matches(str(value), [str(c) for c in choices])
        raise RecipeError(f"{where}: expected one of {', '.join(map(repr, choices))}, got {value!r}{hint}")
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is not type(None):
                try:
                    return coerce(value, option, where)
                except RecipeError:
                    continue
        raise RecipeError(f"{where}: expected {_type_text(annotation)}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise RecipeError(f"{where}: expected {_type_text(annotation)}, got {value!r}")


def _type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if get_args(annotation) and origin is not None:
        return " | ".join("null" if a is type(None) else _type_text(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def param(default: Any = dataclasses.MISSING, *, help: str) -> Any:
    """A strategy field with a one-line help text shown by ``rewriter strategies``."""
    return field(default=default, metadata={"help": help})
