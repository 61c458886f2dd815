"""``analyze``: receptive fields, border layers and cost of a model at an input size, as one record.

This composes the passes (trace -> LayerGraph -> receptive fields -> border -> fvcore) and turns their
results into an ``Analysis`` whose ``to_json()`` is the public JSON contract of ``rewriter analyze --json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._errors import AnalysisError, close_matches
from . import cost as metrics
from .graph import LayerGraph, build_layer_graph
from .information_field import StageField, information_fields
from .layouts import AXES
from .receptive import (
    BorderRule,
    LayerField,
    Number,
    border_verdict,
    final_run_start,
    receptive_fields,
)
from .sizes import check_channels, parse_size
from .stages import find_stages

Size = tuple[int, int]


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
    productive: bool | None  # None: takes no part in the border test (global ops, classifier, attention)
    exceeds_input: tuple[bool, bool] | None  # per axis: the tested r_min is larger than the input
    assumption: str | None = None

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
            "productive": self.productive,
            "exceeds_input": _list(self.exceeds_input),
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
    warnings: tuple[str, ...] = ()
    stages: tuple[StageField, ...] = ()  # paper 003: stages, their units, and each unit's Information Field
    graph: LayerGraph | None = field(default=None, repr=False, compare=False)
    fields: dict[str, LayerField] = field(default_factory=dict, repr=False, compare=False)

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

    @property
    def unproductive_layers(self) -> list[Layer]:
        """Layers from b_min on that fail the border test (the ones truncation would remove)."""
        return [layer for layer in self.layers if layer.productive is False]

    def to_json(self) -> dict[str, Any]:
        """The object printed by ``rewriter analyze --json`` (field names are a public interface)."""
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "feature_size": _list(self.feature_size),
            "border_rule": self.border_rule,
            "flops": self.flops,
            "flop_convention": metrics.FLOP_CONVENTION,
            "flops_skipped_ops": dict(self.flops_skipped_ops),
            "params": self.params,
            "layers": [layer.to_json() for layer in self.layers],
            "border_layer_min": self.border_layer_min,
            "border_layer_max": self.border_layer_max,
            "min_productive_input_size": _rf_json(self.min_productive_input_size),
            "stages": [stage.to_json() for stage in self.stages],
            "warnings": list(self.warnings),
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
                f"--leaf-module {item}: no module of that class in the model{close_matches(item, names)}"
            )
    return tuple(resolved)


def analyze(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    border_rule: BorderRule = "input",
    feature_size: int | Sequence[int] | None = None,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    flops: bool = True,
    name: str | None = None,
) -> Analysis:
    """Receptive fields, border layers and cost of ``model`` for inputs of ``input_size``.

    Args:
        model: the network; it is not modified (its training flags are restored after tracing).
        input_size: the training resolution, ``32`` or ``(height, width)``.
        border_rule: ``"input"`` tests the receptive field a layer's input is based on (r_{l-1} > i, the
            papers' definition); ``"output"`` tests the layer's own output, which reproduces the
            dissertation's ResNet b_min figures.
        feature_size: test against this size instead of the input (small objects; dissertation 9.5.2).
        in_channels: channels of the input image.
        leaf_modules: module classes (or class names) to treat as opaque when fx cannot trace them.
        flops: also count FLOPs with fvcore (one more forward pass).
        name: the model's name in reports; defaults to its class name.

    Example:
        >>> from rewriter.models.zoo import create_model
        >>> result = analyze(create_model("cifar_vgg11"), 32)
        >>> result.border_layer_min
        'features.18'
    """
    size = as_size(input_size)
    limit = as_size(feature_size, "feature size") if feature_size is not None else None
    check_channels(in_channels)
    if border_rule not in ("input", "output"):
        raise AnalysisError(f"border rule must be 'input' or 'output', got {border_rule!r}")
    graph = build_layer_graph(
        model, size, in_channels=in_channels, leaf_classes=resolve_leaf_classes(model, leaf_modules)
    )
    fields = receptive_fields(graph)
    test_size = limit or size
    rows = []
    for node in graph:
        if node.name not in fields or not node.effect.is_listed or node.op == "placeholder":
            continue
        verdict = border_verdict(fields[node.name], test_size, border_rule)
        f = fields[node.name]
        # ops on a globally pooled tensor (squeeze-and-excitation branches) are heads, not feature layers
        takes_part = node.effect.takes_part_in_border and not any(math.isinf(r) for r in f.input.min)
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
                productive=verdict.productive if takes_part else None,
                exceeds_input=verdict.exceeds_min if takes_part else None,
                assumption=effect.assumption,
            )
        )
    participants = [
        (r, border_verdict(fields[r.name], test_size, border_rule)) for r in rows if r.productive is not None
    ]
    b_min = final_run_start((r.name, v.productive) for r, v in participants)
    b_max = final_run_start((r.name, v.productive_max) for r, v in participants)
    rows = _mark_before_border(rows, b_min)
    cost = metrics.count_flops(model, size, in_channels=in_channels) if flops else None
    stages, stage_warning = _stages(model, graph)
    return Analysis(
        model=name or type(model).__name__,
        input_size=size,
        border_rule=border_rule,
        feature_size=limit,
        layers=tuple(rows),
        border_layer_min=b_min,
        border_layer_max=b_max,
        min_productive_input_size=_min_productive_size(rows, border_rule),
        params=cost.params if cost else metrics.count_params(model),
        flops=cost.flops if cost else None,
        flops_skipped_ops=cost.skipped_ops if cost else (),
        warnings=(*_warnings(graph), *stage_warning),
        stages=stages,
        graph=graph,
        fields=fields,
    )


def _stages(model: nn.Module, graph: LayerGraph) -> tuple[tuple[StageField, ...], tuple[str, ...]]:
    """Paper 003's stages and Information Field: an optional part of the analysis, so a failure there is a
    warning, not the end of the analysis (and of every rewrite that needs it)."""
    try:
        return tuple(information_fields(find_stages(model, graph))), ()
    except Exception as err:
        return (), (
            f"the Information Field could not be computed ({type(err).__name__}: {err}); stages left out",
        )


def _mark_before_border(rows: list[Layer], b_min: str | None) -> list[Layer]:
    """Only the final run (from b_min on) is unproductive; earlier layers over the limit are zig-zag dips.

    With skip connections r_min zig-zags (paper 000 IV-C): a block's first conv can exceed the input while
    the next one does not. Such layers are productive by the b_min definition, since later layers still
    receive information with r_min below the input.
    """
    names = [r.name for r in rows]
    border_index = names.index(b_min) if b_min is not None else len(rows)
    out = []
    for i, row in enumerate(rows):
        if row.productive is False and i < border_index:
            row = dataclasses.replace(row, productive=True)
        out.append(row)
    return out


def _min_productive_size(rows: list[Layer], rule: BorderRule) -> tuple[Number, Number] | None:
    """The largest tested r_min of any layer in the border test: at this size every layer is productive."""
    tested = [r.r_in_min if rule == "input" else r.r_out_min for r in rows if r.productive is not None]
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
