"""Strategies: the base class, what they may look at (``Context``), their declared parameters, and what they
declare to the optimizer.

A strategy is a frozen dataclass whose fields are its recipe parameters, each declared with ``param()``:
a help text, and for numbers the range it accepts (``low``/``high``, inclusive) and, for the optimizer,
the values worth trying (``search``). ``plan()`` looks at the model and its analysis and returns a
``Plan`` (``rewriter.engine.plan``) with its notes; ``apply()`` changes a copy of the model that the pipeline
(``rewriter.rewrite``) hands it and returns it, or an ``Applied`` with the notes of what it measured; the
pipeline then checks the invariants. What the optimizer and the sweep need to know of a strategy is declared
on its class (``width_scaling``, ``tail_cut``), never looked up by its name. The registry that finds
strategies by name is ``rewriter.engine.registry``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args, get_origin

from torch import nn

from .._errors import RecipeError, RewriteError, close_matches
from ..analysis.analyzer import Analysis
from .plan import Plan
from .registry import get_strategy, list_strategies


def _quiet(_line: str) -> None:
    pass


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a strategy may look at besides the model: the target size, the head, and the analysis.

    Built by ``Context.of``, which takes the size from the analysis and makes every caller state the run's
    settings, so that no caller leaves one out.
    """

    input_size: tuple[int, int]
    num_classes: int
    analysis: Analysis
    in_channels: int = 3
    pretrained: bool = False  # the model's weights were loaded (a new head will be untrained)
    leaf_classes: tuple[type, ...] = ()  # modules to trace as opaque
    data: Any = None  # a rewriter.lab.DataSource, for strategies that measure the model on data
    replay: bool = False  # rebuilding a saved model whose weights are loaded next: build, do not train
    progress: Callable[[str], None] = _quiet  # a status line for long work (training), shown by the CLI

    @classmethod
    def of(
        cls,
        analysis: Analysis,
        *,
        num_classes: int,
        in_channels: int,
        leaf_classes: tuple[type, ...],
        pretrained: bool,
        data: Any = None,
        replay: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> Context:
        """The context of one step on the model ``analysis`` describes, at the size it was analyzed at.

        Only the pipeline (``rewriter.rewrite``) passes ``data``, ``replay`` and ``progress``: the optimizer's
        candidates are built, never trained, and a strategy that needs data refuses without it.
        """
        return cls(
            input_size=tuple(analysis.input_size), num_classes=num_classes, analysis=analysis,
            in_channels=in_channels, pretrained=pretrained, leaf_classes=tuple(leaf_classes), data=data,
            replay=replay, progress=progress or _quiet,
        )  # fmt: skip


@dataclass(frozen=True)
class Applied:
    """What ``Strategy.apply`` made: the new model, and the notes of what it measured on the way (the
    accuracies of a training it ran), for the report."""

    model: nn.Module
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WidthScaling:
    """A strategy's declaration that it scales every width by one factor: ``rewriter optimize`` searches the
    factors it is given (``width_factors``, ``--width-factor``) as the values of ``param``.

    Attributes:
        param: the parameter that holds the factor.
        measured_from: what ``plan()`` measures the factor from when ``param`` is left unset, on a trained
            model and ``Context.data`` (e.g. "saturation"), said in the optimizer's notes; the optimizer then
            measures it once, on a trained baseline (depth first, then width). None: it must be given.
    """

    param: str
    measured_from: str | None = None

    @property
    def named(self) -> dict[str, str]:
        """The parameters the declaration names, by the field that names them."""
        return {"param": self.param}


@dataclass(frozen=True)
class TailCut:
    """A strategy's declaration that it cuts the unproductive tail at the border (its plans carry
    ``Plan.cut``): ``rewriter sweep`` shows what it keeps at each input size and advises it.

    Attributes:
        rule_param: the parameter that picks the border rule (``"input"`` or ``"output"``), named in the
            sweep's advice to cut by the output rule.
    """

    rule_param: str

    @property
    def named(self) -> dict[str, str]:
        """The parameters the declaration names, by the field that names them."""
        return {"rule_param": self.rule_param}


class Strategy:
    """Base class of the strategies; subclasses are frozen dataclasses registered with a ``name``."""

    name: ClassVar[str] = ""
    #: the frozen dataclass a plan's ``payload`` is (what ``apply()`` needs), for plans read back from YAML
    payload_type: ClassVar[type | None] = None
    #: why the model this strategy makes cannot be exported (ONNX, torch.export); None: it can be
    export_refusal: ClassVar[str | None] = None
    #: where the strategy goes in a composition that ``rewriter optimize`` builds (smaller runs first):
    #: 10 the stem's downsampling, 20 downsampling elsewhere, 30 stages, 40 kernels, 50 truncation (it cuts
    #: at the border of what the steps before it made), 60 width (depth first, then width: dissertation 11.3)
    search_order: ClassVar[int] = 45
    #: it scales every width by one factor (``WidthScaling``); None: it does not
    width_scaling: ClassVar[WidthScaling | None] = None
    #: it cuts the unproductive tail at the border (``TailCut``); None: it does not
    tail_cut: ClassVar[TailCut | None] = None

    def plan(self, model: nn.Module, context: Context) -> Plan:
        """What the strategy will do to ``model``, with the notes to show beside it."""
        raise NotImplementedError

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module | Applied:
        """Change ``model`` (the pipeline's own copy) as ``plan`` says and return the new model, or an
        ``Applied`` with the notes of what it measured on the way."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def refuse(self, reason: str) -> RewriteError:
        """The error to raise when the strategy does not apply to a model, with the reason."""
        return RewriteError(reason)


def apply_plan(strategy: Strategy, model: nn.Module, plan: Plan, context: Context) -> Applied:
    """``strategy.apply(model, plan, context)``, its result as an ``Applied`` (notes or none)."""
    result = strategy.apply(model, plan, context)
    return result if isinstance(result, Applied) else Applied(result)


Declaration = Literal["width_scaling", "tail_cut"]


def declarations(attribute: Declaration) -> dict[str, Any]:
    """What every registered strategy that declares ``attribute`` declares, by strategy name (sorted).

    Raises:
        RecipeError: a declaration names a parameter its strategy does not have.
    """
    found = {}
    for name in list_strategies():
        cls = get_strategy(name)
        declared = getattr(cls, attribute, None)
        if declared is None:
            continue
        fields = [p.name for p in parameters(cls)]
        for key, named in declared.named.items():
            if named not in fields:
                raise RecipeError(
                    f"strategy '{name}' declares {attribute}.{key}={named!r}, which is not one of its "
                    f"parameters ({', '.join(fields) or 'none'}); fix the declaration"
                )
        found[name] = declared
    return found


@dataclass(frozen=True)
class Parameter:
    """One recipe parameter of a strategy, for ``rewriter strategies`` and for validation."""

    name: str
    annotation: Any
    default: Any
    help: str = ""
    low: float | None = None  # the smallest value accepted (inclusive), for numbers
    high: float | None = None  # the largest value accepted (inclusive)
    search: tuple[Any, ...] | None = None  # the values the optimizer tries; None: not searched

    @property
    def range_text(self) -> str:
        """``0 <= x``, ``0 < x <= 1``-style text of the accepted range ('' when unbounded)."""
        if self.low is None and self.high is None:
            return ""
        low = "" if self.low is None else f"{self.low:g} <= "
        high = "" if self.high is None else f" <= {self.high:g}"
        return f"{low}{self.name}{high}"

    def check(self, value: Any, where: str) -> None:
        """Refuse a number that is not finite or lies outside the declared range.

        Raises:
            RecipeError: with the location, the value and the range.
        """
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{where}: expected a finite number, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise RecipeError(f"{where}: {value!r} is out of range; expected {self.range_text}")

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    @property
    def type_text(self) -> str:
        return _type_text(self.annotation)


def parameters(cls: type[Strategy]) -> list[Parameter]:
    """The declared parameters of a strategy class, in field order."""
    hints = typing.get_type_hints(cls)
    return [
        Parameter(
            f.name,
            hints[f.name],
            f.default,
            f.metadata.get("help", ""),
            low=f.metadata.get("low"),
            high=f.metadata.get("high"),
            search=f.metadata.get("search"),
        )
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    ]


def summary(cls: type[Strategy]) -> str:
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
            value = coerce(params[param.name], param.annotation, f"{where}.{param.name}")
            param.check(value, f"{where}.{param.name}")
            values[param.name] = value
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


def param(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    low: float | None = None,
    high: float | None = None,
    search: Sequence[Any] | None = None,
) -> Any:
    """A strategy field: a one-line help text shown by ``rewriter strategies``, for numbers the accepted
    range ``low <= value <= high`` (checked when a recipe is read), and ``search``, the values
    ``rewriter optimize`` tries (a Literal's choices are tried when ``search`` is not given)."""
    metadata = {
        "help": help,
        "low": low,
        "high": high,
        "search": tuple(search) if search is not None else None,
    }
    return field(default=default, metadata=metadata)
