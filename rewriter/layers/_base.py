"""The records, the rule table and the helpers that the rule modules share."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import nn

from .. import layouts
from ..layouts import AXES, Layout

Category = Literal[
    "conv", "pool", "adaptive_pool", "linear", "attention", "window_attention", "reduction", "resample",
    "slice", "elementwise", "layout", "unknown",
]  # fmt: skip


#: categories whose layers take part in the border test (paper 000 analyses the convolutional part)
BORDER_CATEGORIES = frozenset({"conv", "pool", "adaptive_pool", "window_attention"})


#: categories that are always listed in the per-layer table, even when they act as 1x1
LISTED_CATEGORIES = frozenset({"conv", "pool", "adaptive_pool", "linear", "attention", "window_attention"})


@dataclass(frozen=True)
class AxisEffect:
    """What an op does to one spatial axis: ``r_out = r_in + (kernel - 1) * jump``, ``jump *= stride``."""

    kernel: int = 1
    stride: Fraction = Fraction(1)
    unbounded: bool = False

    @property
    def is_identity(self) -> bool:
        return not self.unbounded and self.kernel == 1 and self.stride == 1


IDENTITY = AxisEffect()


UNBOUNDED = AxisEffect(unbounded=True)


@dataclass(frozen=True)
class OpEffect:
    """The effect of one op on positions, and the layout(s) of what it returns."""

    category: Category
    axes: tuple[AxisEffect, AxisEffect] = (IDENTITY, IDENTITY)
    layout: Any = None  # Layout, a tuple of Layouts for ops returning tuples, or None for non-tensors
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int | float, ...] | None = None
    dilation: tuple[int, ...] | None = None
    assumption: str | None = None
    unknown: bool = False

    @property
    def is_global(self) -> bool:
        return any(a.unbounded for a in self.axes)

    @property
    def changes_receptive_field(self) -> bool:
        return not all(a.is_identity for a in self.axes)

    @property
    def takes_part_in_border(self) -> bool:
        """Convolutions and pooling with a kernel larger than 1 on some axis.

        Global ops and classifier heads take no part (the papers analyse the convolutional part), nor do
        1x1 ops: they cannot integrate neighbouring positions, whatever their input's receptive field.
        (Counting them would let a ResNet's 1x1 projection shortcut, whose r_min is the stem's, break the
        final unproductive run, which contradicts the b_min the dissertation reports for ResNet18/34.)
        """
        return (
            self.category in BORDER_CATEGORIES and not self.is_global and any(a.kernel > 1 for a in self.axes)
        )

    @property
    def is_listed(self) -> bool:
        return self.category in LISTED_CATEGORIES or self.changes_receptive_field


@dataclass(frozen=True)
class TensorShape:
    """What shape propagation records for a tensor (a record, not a tuple, so tuples of them stay tuples)."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class OpContext:
    """What a rule may look at: the node, its module (for ``call_module``), and input layouts/shapes."""

    node: fx.Node
    module: nn.Module | None
    env: Mapping[fx.Node, Any] = field(repr=False)

    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        """Argument by position, else by keyword, else ``default``."""
        if index < len(self.node.args):
            return self.node.args[index]
        if name is not None:
            return self.node.kwargs.get(name, default)
        return default

    def layout(self, value: Any) -> Any:
        return self.env.get(value) if isinstance(value, fx.Node) else None

    @staticmethod
    def shape(value: Any) -> tuple[int, ...] | None:
        meta = value.meta.get("tensor_meta") if isinstance(value, fx.Node) else None
        return meta.shape if isinstance(meta, TensorShape) else None

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return self.shape(self.node)

    @property
    def tensor_inputs(self) -> list[fx.Node]:
        """Inputs that carry image data (those with a layout), in argument order."""
        return [
            n
            for n in self.node.all_input_nodes
            if isinstance(self.env.get(n), tuple) and is_layout(self.env[n])
        ]

    @property
    def input(self) -> fx.Node:
        return self.tensor_inputs[0]


def is_layout(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, frozenset) for v in value)


Rule = Callable[[OpContext], OpEffect]


_MODULE_RULES: dict[type, Rule] = {}


_MODULE_RULES_BY_NAME: dict[str, Rule] = {}


_FUNCTION_RULES: dict[str, Rule] = {}


def register_module_rule(*classes: type | str) -> Callable[[Rule], Rule]:
    """Register a rule for modules of these classes (a class, or its ``module.QualName`` string).

    A class registered here is also traced as a leaf: fx records one node for it instead of its insides.
    """

    def decorator(rule: Rule) -> Rule:
        for cls in classes:
            if isinstance(cls, str):
                _MODULE_RULES_BY_NAME[cls] = rule
            else:
                _MODULE_RULES[cls] = rule
        return rule

    return decorator


def register_function_rule(*names: str) -> Callable[[Rule], Rule]:
    """Register a rule for functions and tensor methods with these ``__name__``s."""

    def decorator(rule: Rule) -> Rule:
        for name in names:
            _FUNCTION_RULES[name] = rule
        return rule

    return decorator


def qualified_class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def module_rule(module: nn.Module) -> Rule | None:
    """The rule for ``module``'s class (or a base class), or None if the table has none."""
    for cls in type(module).__mro__:
        rule = _MODULE_RULES.get(cls) or _MODULE_RULES_BY_NAME.get(qualified_class_name(cls))
        if rule is not None:
            return rule
    return None


def has_module_rule(module: nn.Module) -> bool:
    return module_rule(module) is not None and not isinstance(module, nn.Sequential)


def target_name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def effect_of(ctx: OpContext) -> OpEffect:
    """Apply the table to one node; unknown ops get the 1x1 assumption and ``unknown=True``."""
    if ctx.module is not None:
        rule = module_rule(ctx.module)
        if rule is None:
            return unknown_module(ctx)
        return rule(ctx)
    rule = _FUNCTION_RULES.get(target_name(ctx.node))
    if rule is None:
        return unknown_function(ctx)
    return rule(ctx)


def as_tuple(value: Any, n: int) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value) * n if len(value) == 1 else tuple(value)
    return (value,) * n


def per_axis(
    layout: Layout, dims: Sequence[int], effects: Sequence[AxisEffect]
) -> tuple[AxisEffect, AxisEffect]:
    """Place one effect per tensor dim onto the spatial axes those dims carry."""
    out = [IDENTITY, IDENTITY]
    for d, effect in zip(dims, effects, strict=True):
        for axis in layout[d]:
            out[axis] = effect
    return out[0], out[1]


def unbounded_on(axes: frozenset[int]) -> tuple[AxisEffect, AxisEffect]:
    return tuple(UNBOUNDED if a in axes else IDENTITY for a in AXES)  # type: ignore[return-value]


def window_effects(
    ctx: OpContext, layout: Layout, windows: Sequence[tuple[int, int]]
) -> tuple[AxisEffect, ...]:
    """Effects of ops that combine ``k`` neighbours with stride ``s`` along the last dims."""
    n = len(windows)
    return per_axis(
        layout, range(len(layout) - n, len(layout)), [AxisEffect(k, Fraction(s)) for k, s in windows]
    )


def spatial_sizes(layout: Layout, shape: Sequence[int], axis: int) -> list[int]:
    return [shape[d] for d, axes in enumerate(layout) if axis in axes]


def resample_effect(in_size: int, out_size: int, *, kernel: int) -> AxisEffect:
    """An op mapping ``in_size`` positions to ``out_size`` with windows of ``kernel`` input positions."""
    if in_size == out_size and kernel == 1:
        return IDENTITY
    return AxisEffect(kernel=kernel, stride=Fraction(in_size, out_size))


def elementwise(ctx: OpContext, category: Category = "elementwise", **kwargs) -> OpEffect:
    shape = ctx.out_shape
    if shape is None:
        return OpEffect(category, layout=None, **kwargs)
    layout = layouts.broadcast([ctx.layout(n) for n in ctx.tensor_inputs], len(shape))
    return OpEffect(category, layout=layout, **kwargs)


def reshaped(ctx: OpContext) -> Layout:
    x = ctx.input
    return layouts.reshape(ctx.layout(x), ctx.shape(x), ctx.out_shape)


def unknown_module(ctx: OpContext) -> OpEffect:
    """An opaque module: infer a stride from the shape change, assume kernel = stride (1x1 if unchanged)."""
    name = type(ctx.module).__name__
    if not ctx.tensor_inputs or ctx.out_shape is None:
        return OpEffect(
            "unknown", layout=None, unknown=True, assumption=f"{name}: no tensor in or out; ignored"
        )
    x = ctx.input
    in_layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    out_layout = in_layout if len(in_shape) == len(out_shape) else reshaped(ctx)
    axes = []
    for axis in AXES:
        before, after = spatial_sizes(in_layout, in_shape, axis), spatial_sizes(out_layout, out_shape, axis)
        if len(before) == 1 and len(after) == 1 and after[0] < before[0] and before[0] % after[0] == 0:
            factor = before[0] // after[0]
            axes.append(AxisEffect(factor, Fraction(factor)))
        else:
            axes.append(IDENTITY)
    if all(a.is_identity for a in axes):
        assumption = f"unknown module {name}: treated as 1x1, stride 1 (no receptive-field growth)"
    else:
        ks = "x".join(str(a.kernel) for a in axes)
        assumption = (
            f"unknown module {name}: treated as a {ks} kernel with equal stride, inferred from its shapes"
        )
    return OpEffect("unknown", axes=tuple(axes), layout=out_layout, assumption=assumption, unknown=True)


def unknown_function(ctx: OpContext) -> OpEffect:
    name = target_name(ctx.node)
    shape = ctx.out_shape
    if not ctx.tensor_inputs or shape is None:
        return OpEffect("unknown", layout=None)  # no image data in or out: nothing to assume
    x = ctx.input
    if len(ctx.shape(x)) == len(shape):
        layout = layouts.broadcast([ctx.layout(n) for n in ctx.tensor_inputs], len(shape))
    else:
        layout = reshaped(ctx)
    return OpEffect(
        "unknown",
        layout=layout,
        unknown=True,
        assumption=f"unknown op '{name}': treated as 1x1, stride 1 (no receptive-field growth)",
    )
