"""The ``Analysis`` record of a model at an input size, and how it is built from the passes' results.

``build_analysis`` turns a LayerGraph, its receptive fields and attention gates (``receptive.field_pass``)
and a FLOP count into an ``Analysis`` whose ``to_json()`` is the public JSON contract of
``rewriter analyze --json``. ``traced_model.analyze`` and ``TracedModel.analyze`` run the passes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from .._errors import AnalysisError, close_matches
from .._text import one_line
from . import flops_fvcore as metrics
from .breakdown import flops_by_module, params_by_module
from .flops_meta import FLOP_CONVENTION, FlopCount
from .graph import LayerGraph
from .information_field import StageField, information_fields
from .layouts import AXES
from .receptive import BorderRule, FieldPass, LayerField, Number, border_verdict, final_run_start
from .sizes import parse_size
from .stages import find_stages

Size = tuple[int, int]
Role = Literal["feature", "attention"]


@dataclass(frozen=True)
class Layer:
    """One row of the per-layer table: an op with a kernel, a stride, or one that mixes all positions."""

    name: str
    type: str
    category: str
    kernel_size: tuple[int, ...] | None
    stride: tuple[int | float, ...] | None
    dilation: tuple[int, ...] | None
    input_size: Size | None
    output_size: Size | None
    r_in_min: tuple[Number, Number]
    r_in_max: tuple[Number, Number]
    r_out_min: tuple[Number, Number]
    r_out_max: tuple[Number, Number]
    productive: bool | None  # False: in the tail (b_min and after); None: takes no part in the border test
    exceeds_input: tuple[bool, bool] | None  # per axis: the tested r_min is larger than the input
    assumption: str | None = None
    role: Role = "feature"  # "attention": in a gate branch (SE, CBAM), omitted from the border runs
    exceeds: bool | None = None  # the layer's own test: the tested r_min exceeds the input on every axis
    in_tail: bool | None = None  # in the final run of exceeding layers that b_min starts

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "category": self.category,
            "kernel_size": _list(self.kernel_size),
            "stride": _list(self.stride),
            "dilation": _list(self.dilation),
            "r_in_min": _rf_json(self.r_in_min),
            "r_in_max": _rf_json(self.r_in_max),
            "r_out_min": _rf_json(self.r_out_min),
            "r_out_max": _rf_json(self.r_out_max),
            "input_size": _list(self.input_size),
            "output_size": _list(self.output_size),
            "role": self.role,
            "exceeds": self.exceeds,
            "exceeds_input": _list(self.exceeds_input),
            "in_tail": self.in_tail,
            "productive": self.productive,
            "assumption": self.assumption,
        }


@dataclass(frozen=True)
class Analysis:
    """Receptive fields, border layers and cost of one model at one input size."""

    model: str
    input_size: Size
    border_rule: BorderRule
    feature_size: Size | None
    layers: tuple[Layer, ...]
    border_layer_min: str | None
    border_layer_max: str | None
    min_productive_input_size: tuple[Number, Number] | None
    params: int
    flops: int | None = None
    flops_skipped_ops: tuple[tuple[str, int], ...] = ()
    flops_backend: str | None = None  # "meta" (the shape pass) or "fvcore"; None when not counted
    flops_by_operator: tuple[tuple[str, int], ...] = ()
    # fvcore's by_module convention (``breakdown``): a module's cost includes its children's, "" the model's
    flops_by_module: tuple[tuple[str, int], ...] = ()
    params_by_module: tuple[tuple[str, int], ...] = ()
    flops_by_node: tuple[tuple[str, int], ...] = ()  # each op's own FLOPs (the meta backend counts them)
    warnings: tuple[str, ...] = ()
    # paper 003: stages, their units and each unit's Information Field; computed when first read
    stages_of: Callable[[], tuple[StageField, ...]] | None = field(default=None, repr=False, compare=False)
    graph: LayerGraph | None = field(default=None, repr=False, compare=False)
    fields: dict[str, LayerField] = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def stages(self) -> tuple[StageField, ...]:
        """Paper 003: the stages, their units, and each unit's Information Field (empty if it failed)."""
        return self._stage_result[0]

    @functools.cached_property
    def _stage_result(self) -> tuple[tuple[StageField, ...], tuple[str, ...]]:
        # an optional part of the analysis: a refusal (channels that do not split into the groups the paper's
        # formula needs) is a warning, not the end of the analysis and of every rewrite that needs it; any
        # other failure is a bug and surfaces
        if self.stages_of is None:
            return (), ()
        try:
            return tuple(self.stages_of()), ()
        except AnalysisError as err:
            reason = one_line(err, limit=200)
            return (), (f"the Information Field could not be computed ({reason}); stages left out",)
        except Exception as err:
            raise AnalysisError(
                f"the Information Field failed ({type(err).__name__}: {one_line(err, limit=200)}): a bug; "
                "please report it with its traceback"
            ) from err

    @property
    def all_warnings(self) -> tuple[str, ...]:
        """The analysis warnings and, computing the stages, why they could not be (if so)."""
        return (*self.warnings, *self._stage_result[1])

    @property
    def limit(self) -> Size:
        """The size the receptive fields are tested against: the feature size if given, else the input."""
        return self.feature_size or self.input_size

    def layer(self, name: str) -> Layer:
        """The row named ``name``; ``layer_names()`` lists them."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise AnalysisError(
            f"no layer named '{name}' in the analysis{close_matches(name, self.layer_names())}"
        )

    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer_cost(self, name: str) -> tuple[int | None, int | None]:
        """The parameters and FLOPs of the layer ``name``: for a module, its own (children included, as
        fvcore's by_module); for a function, its FLOPs and no parameters (None). FLOPs None: not counted."""
        node = self.graph[name] if self.graph is not None and name in self.graph else None
        module = node.target if node is not None and node.is_module else None
        params = None if module is None else dict(self.params_by_module).get(module, 0)
        if self.flops is None:
            return params, None
        if self.flops_by_node:  # the meta backend: every op's own count
            return params, dict(self.flops_by_node).get(name, 0)
        return params, None if module is None else dict(self.flops_by_module).get(module, 0)

    @property
    def unproductive_layers(self) -> list[Layer]:
        """The tail: the layers from b_min on, each exceeding the input (the ones truncation removes)."""
        return [layer for layer in self.layers if layer.in_tail]

    @property
    def exceeding_layers(self) -> list[Layer]:
        """Every layer whose own test fails, in the tail or not (zig-zag dips before b_min included)."""
        return [layer for layer in self.layers if layer.exceeds]

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``rewriter analyze --json`` (field names are a public interface)."""
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "feature_size": _list(self.feature_size),
            "border_rule": self.border_rule,
            "flops": self.flops,
            "flops_backend": self.flops_backend,
            "flop_convention": FLOP_CONVENTION,
            "flops_by_operator": dict(self.flops_by_operator),
            "flops_skipped_ops": dict(self.flops_skipped_ops),
            "params": self.params,
            "flops_by_module": dict(self.flops_by_module),
            "params_by_module": dict(self.params_by_module),
            "layers": [{**layer.to_json(), **self._cost_json(layer.name)} for layer in self.layers],
            "border_layer_min": self.border_layer_min,
            "border_layer_max": self.border_layer_max,
            "min_productive_input_size": _rf_json(self.min_productive_input_size),
            "stages": [stage.to_json() for stage in self.stages],
            "warnings": list(self.all_warnings),
        }

    def _cost_json(self, name: str) -> dict[str, Any]:
        params, flops = self.layer_cost(name)
        return {
            "params": params,
            "params_share": None if params is None or not self.params else params / self.params,
            "flops": flops,
            "flops_share": None if flops is None or not self.flops else flops / self.flops,
        }


def _list(value: Sequence | None) -> list | None:
    return None if value is None else list(value)


def _rf_json(value: Sequence[Number] | None) -> list | None:
    """Per-axis receptive field for JSON: unbounded is null, and fully unbounded is a single null."""
    if value is None or all(math.isinf(v) for v in value):
        return None
    return [None if math.isinf(v) else v for v in value]


def as_size(value: int | Sequence[int], what: str = "input size") -> Size:
    """Normalise ``32`` or ``(32, 48)`` (height, width) to a pair of positive ints within the bounds in
    force (``rewriter.analysis.sizes``, the one size parser)."""
    return parse_size(value, what)


def resolve_leaf_classes(model: nn.Module, leaf_modules: Sequence[type | str]) -> tuple[type, ...]:
    """Turn class names given on the command line into the classes found in ``model``."""
    present = {type(m) for m in model.modules()}
    by_name = {}
    for cls in present:
        by_name[cls.__name__] = cls
        by_name[f"{cls.__module__}.{cls.__qualname__}"] = cls
    resolved = []
    for item in leaf_modules:
        if isinstance(item, type):
            resolved.append(item)
        elif item in by_name:
            resolved.append(by_name[item])
        else:
            names = sorted({c.__name__ for c in present})
            raise AnalysisError(
                f"leaf_modules {item}: no module of that class in the model{close_matches(item, names)}",
                param="leaf_modules",
            )
    return tuple(resolved)


def build_analysis(
    graph: LayerGraph,
    passed: FieldPass,
    *,
    model: nn.Module,
    border_rule: BorderRule,
    feature_size: Size | None,
    flops: FlopCount | None,
    name: str,
) -> Analysis:
    """The per-layer rows, the border layers and the figures of one model at one size."""
    size = graph.input_size
    modules = {name for name, _ in model.named_modules()}
    rows = _rows(graph, passed, feature_size or size, border_rule)
    tested = [r for r in rows if r.exceeds is not None]
    b_min = final_run_start((r.name, not r.exceeds) for r in tested)
    b_max = final_run_start(
        (r.name, v) for r, v in _max_verdicts(tested, passed, feature_size or size, border_rule)
    )
    return Analysis(
        model=name,
        input_size=size,
        border_rule=border_rule,
        feature_size=feature_size,
        layers=tuple(_mark_tail(rows, b_min)),
        border_layer_min=b_min,
        border_layer_max=b_max,
        min_productive_input_size=_min_productive_size(rows, border_rule),
        params=metrics.count_params(model),
        flops=flops.total if flops else None,
        flops_skipped_ops=flops.skipped_ops if flops else (),
        flops_backend="meta" if flops else None,
        flops_by_operator=flops.by_operator if flops else (),
        flops_by_module=tuple(flops_by_module(graph, flops.by_node, modules).items()) if flops else (),
        params_by_module=tuple(params_by_module(model).items()),
        flops_by_node=flops.by_node if flops else (),
        warnings=_warnings(graph),
        stages_of=lambda: tuple(information_fields(find_stages(model, graph))),
        graph=graph,
        fields=passed.fields,
    )


def _rows(graph: LayerGraph, passed: FieldPass, limit: Size, rule: BorderRule) -> list[Layer]:
    rows = []
    for node in graph:
        f = passed.fields.get(node.name)
        if f is None or not node.effect.is_listed or node.op == "placeholder":
            continue
        role: Role = "attention" if node.name in passed.attention else "feature"
        # feature layers take part unless they are 1x1, global, or act on a globally pooled tensor (a head)
        takes_part = (
            role == "feature"
            and node.effect.takes_part_in_border
            and not any(math.isinf(r) for r in f.input.min)
        )
        verdict = border_verdict(f, limit, rule) if takes_part else None
        effect = node.effect
        rows.append(
            Layer(
                name=node.name,
                type=node.type,
                category=effect.category,
                kernel_size=effect.kernel_size,
                stride=effect.stride,
                dilation=effect.dilation,
                input_size=node.input_size,
                output_size=node.output_size,
                r_in_min=f.input.min,
                r_in_max=f.input.max,
                r_out_min=f.output.min,
                r_out_max=f.output.max,
                productive=None,
                exceeds_input=verdict.exceeds_min if verdict else None,
                assumption=effect.assumption,
                role=role,
                exceeds=not verdict.productive if verdict else None,
            )
        )
    return rows


def _max_verdicts(tested: list[Layer], passed: FieldPass, limit: Size, rule: BorderRule):
    return [(r, border_verdict(passed.fields[r.name], limit, rule).productive_max) for r in tested]


def _mark_tail(rows: list[Layer], b_min: str | None) -> list[Layer]:
    """Mark the tail: the tested layers from b_min on. Only they are unproductive (``productive=False``).

    With skip connections r_min zig-zags (paper 000 IV-C): a block's conv can exceed the input while a
    later one does not. A layer that exceeds before b_min is productive by the b_min definition
    (dissertation 10.2), since later layers still receive information with r_min below the input; it is
    reported with ``exceeds=True`` and ``in_tail=False``.
    """
    names = [r.name for r in rows]
    border_index = names.index(b_min) if b_min is not None else len(rows)
    out = []
    for i, row in enumerate(rows):
        if row.exceeds is not None:
            in_tail = i >= border_index
            row = dataclasses.replace(row, in_tail=in_tail, productive=not in_tail)
        out.append(row)
    return out


def _min_productive_size(rows: list[Layer], rule: BorderRule) -> tuple[Number, Number] | None:
    """The largest tested r_min of any layer in the border test: at this size every layer is productive."""
    tested = [r.r_in_min if rule == "input" else r.r_out_min for r in rows if r.exceeds is not None]
    if not tested:
        return None
    return tuple(max(t[a] for t in tested) for a in AXES)  # type: ignore[return-value]


def _warnings(graph: LayerGraph) -> tuple[str, ...]:
    """One line per unknown op kind, naming where it occurs and what was assumed."""
    by_assumption: dict[str, list[str]] = {}
    for node in graph:
        if node.effect.unknown:
            by_assumption.setdefault(node.effect.assumption or "unknown op", []).append(node.name)
    lines = []
    for assumption, names in by_assumption.items():
        where = ", ".join(f"'{n}'" for n in names[:5]) + (
            f" and {len(names) - 5} more" if len(names) > 5 else ""
        )
        lines.append(f"{assumption}; at {where}")
    return tuple(lines)
