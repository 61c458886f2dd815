"""Applying the table to one node, and what happens where it has no answer: ops without a rule, rules
that fail, and results that lose track of the image's positions. Each such case is reported with the
assumption made (a warning of the analysis), never silently treated as 1x1."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Any

from ..._errors import AnalysisError
from ..._text import one_line
from .. import layouts
from ..layouts import AXES, Layout
from ._base import (
    IDENTITY,
    AxisEffect,
    OpContext,
    OpEffect,
    RuleRefusal,
    Several,
    TensorShape,
    function_rule,
    is_layout,
    module_rule,
    target_name,
)


def effect_of(ctx: OpContext) -> OpEffect:
    """Apply the table to one node; unknown ops, and rules that refuse a node (``RuleRefusal``), get the 1x1
    assumption, and a result that drops or resizes the positions without saying why is flagged (``followed``).

    Raises:
        AnalysisError: a rule failed otherwise: a bug in the rule, which must not pass as an assumption.
    """
    if ctx.module is not None:
        rule = module_rule(ctx.module)
        fallback = unknown_module
    else:
        entry = function_rule(ctx.node)
        rule = entry.rule if entry is not None else None
        fallback = unknown_function
    if rule is None:
        return fallback(ctx)
    try:
        effect = rule(ctx)
    except RuleRefusal as err:
        return fallback(ctx, reason=f"its rule does not read it: {err}")
    except Exception as err:
        what = type(ctx.module).__name__ if ctx.module is not None else f"'{target_name(ctx.node)}'"
        raise AnalysisError(
            f"the receptive-field rule of {what} failed on node '{ctx.node.name}' ({type(err).__name__}: "
            f"{one_line(err, limit=200)}): a bug in the rule; please report it with its traceback"
        ) from err
    if effect.layout is None and _returns_tensors(ctx) and ctx.layouts_and_shapes():
        return fallback(ctx, reason="its rule gave no layout for the tensors it returns")
    return followed(ctx, effect)


def _returns_tensors(ctx: OpContext) -> bool:
    found = False

    def visit(item: Any) -> Any:
        nonlocal found
        found = found or isinstance(item, TensorShape)
        return item

    import torch.fx as fx

    fx.node.map_aggregate(ctx.outputs(), visit)
    return found


def followed(ctx: OpContext, effect: OpEffect) -> OpEffect:
    """``effect``, flagged where the graph would otherwise lose track of positions without a word.

    Two faults of this kind went unnoticed before: explicit padding taken as element-wise (the padded map no
    longer matched its input's layout, the spatial axes were dropped, and every later op counted as 1x1), and
    an op whose tuple result was dropped with its whole branch. So: a result that no longer holds an axis
    its input had (more than one position of), unless the op mixed that whole axis (a global op), and an
    element-wise result whose number of positions differs from its inputs', are reported as assumptions.
    """
    if effect.unknown or not is_layout(effect.layout):
        return effect
    inputs = ctx.layouts_and_shapes()
    if not inputs:
        return effect
    before: dict[int, int] = {}
    for layout, _ in inputs:
        for axis, count in layouts.positions(layout).items():
            before[axis] = max(before.get(axis, 1), count)
    after = layouts.positions(effect.layout)
    problems = []
    lost = [a for a in AXES if before.get(a, 1) > 1 and a not in after and not effect.axes[a].unbounded]
    if lost and effect.category == "layout" and _joined_with_others(inputs, lost):
        lost = []  # picking a class token out of [class token, positions...]: not a position of the image
    if lost and effect.category != "layout":
        problems.append(f"its result no longer holds the {' and '.join(layouts.AXIS_NAMES[a] for a in lost)}")
    elif lost:
        problems.append(f"it drops the {' and '.join(layouts.AXIS_NAMES[a] for a in lost)} positions")
    changed = [a for a in AXES if a in before and a in after and before[a] != after[a]]
    if changed and effect.category == "elementwise":
        problems.append(
            "it changes the number of positions ("
            + ", ".join(f"{layouts.AXIS_NAMES[a]} {before[a]} -> {after[a]}" for a in changed)
            + ") without a rule for how"
        )
    if not problems:
        return effect
    what = type(ctx.module).__name__ if ctx.module is not None else f"'{target_name(ctx.node)}'"
    note = f"{what}: {'; '.join(problems)}: the positions after it are not followed (taken as 1x1)"
    return replace(
        effect, unknown=True, assumption=note if not effect.assumption else f"{effect.assumption}; {note}"
    )


def _joined_with_others(inputs: list[tuple[Layout, tuple[int, ...]]], axes: list[int]) -> bool:
    """Whether the dim holding these axes also holds entries that are not positions (a class token
    concatenated to the patches: 197 entries for 14 x 14 positions)."""
    for layout, shape in inputs:
        for dim, size in zip(layout, shape, strict=False):
            if any(f.axis in axes for f in dim) and layouts.size_of(dim) != size:
                return True
    return False


def unknown_module(ctx: OpContext, *, reason: str = "") -> OpEffect:
    """An opaque module: infer a stride from the shape change, assume kernel = stride (1x1 if unchanged).

    A module that returns several tensors (an ``nn.LSTM``'s ``(output, (h, c))``) gets a layout for each,
    so that the branch reading them stays in the graph, and its warning is raised.
    """
    name = type(ctx.module).__name__
    why = f" ({reason})" if reason else ""
    metas = ctx.outputs()
    if not ctx.tensor_inputs or metas is None:
        return OpEffect(
            "unknown", layout=None, unknown=True, assumption=f"{name}: no tensor in or out; ignored{why}"
        )
    x = ctx.input
    in_layout, in_shape = ctx.layout(x), ctx.shape(x)
    out_layout = _unknown_layouts(in_layout, in_shape, metas)
    first = out_layout
    while isinstance(first, Several):
        first = next((part for part in first if part is not None), None)
    first_shape = _first_shape(metas)
    before = layouts.spatial_size(in_layout, in_shape)
    after = layouts.spatial_size(first, first_shape) if first is not None and first_shape else None
    axes = []
    for axis in AXES:
        if before and after and after[axis] < before[axis] and before[axis] % after[axis] == 0:
            factor = before[axis] // after[axis]
            axes.append(AxisEffect(factor, Fraction(factor)))
        else:
            axes.append(IDENTITY)
    several = " (it returns several tensors; each is followed)" if isinstance(out_layout, Several) else ""
    if all(a.is_identity for a in axes):
        assumption = (
            f"unknown module {name}: treated as 1x1, stride 1 (no receptive-field growth){several}{why}"
        )
    else:
        ks = "x".join(str(a.kernel) for a in axes)
        assumption = (
            f"unknown module {name}: treated as a {ks} kernel with equal stride, inferred from its shapes"
            f"{several}{why}"
        )
    return OpEffect("unknown", axes=tuple(axes), layout=out_layout, assumption=assumption, unknown=True)


def _first_shape(metas: Any) -> tuple[int, ...] | None:
    if isinstance(metas, TensorShape):
        return metas.shape
    if isinstance(metas, (list, tuple)):
        for meta in metas:
            shape = _first_shape(meta)
            if shape is not None:
                return shape
    return None


def _unknown_layouts(in_layout: Layout, in_shape: tuple[int, ...], metas: Any) -> Any:
    """A layout for every tensor an opaque op returns: its input's, resized or reshaped to the output."""
    if isinstance(metas, TensorShape):
        out_shape = metas.shape
        if len(in_shape) == len(out_shape):
            return layouts.resized(in_layout, out_shape)
        return layouts.reshape(in_layout, in_shape, out_shape)[0]
    if isinstance(metas, (list, tuple)):
        return Several(_unknown_layouts(in_layout, in_shape, m) for m in metas)
    return None


def unknown_function(ctx: OpContext, *, reason: str = "") -> OpEffect:
    name = target_name(ctx.node)
    shape = ctx.out_shape
    inputs = ctx.layouts_and_shapes()
    why = f" ({reason})" if reason else ""
    assumption = f"unknown op '{name}': treated as 1x1, stride 1 (no receptive-field growth){why}"
    if not inputs:
        return OpEffect("unknown", layout=None)  # no image data in: nothing to assume
    first_layout, first_shape = inputs[0]
    if shape is None:
        metas = ctx.outputs()
        if not isinstance(metas, (list, tuple)):
            return OpEffect("unknown", layout=None)  # no tensor out (shape arithmetic): nothing to assume
        layout = _unknown_layouts(first_layout, first_shape, metas)
        return OpEffect("unknown", layout=layout, unknown=True, assumption=assumption)
    if len(first_shape) == len(shape):
        layout = layouts.broadcast(inputs, shape)
    else:
        layout = layouts.reshape(first_layout, first_shape, shape)[0]
    return OpEffect("unknown", layout=layout, unknown=True, assumption=assumption)
