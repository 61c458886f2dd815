"""The records, the rule table and the helpers that the rule modules share."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import nn

from .. import layouts, windowing
from ..layouts import Layout
from ..op_keys import OpKey, describe, op_key

Category = Literal[
    "conv", "pool", "adaptive_pool", "linear", "attention", "window_attention", "recurrent", "reduction",
    "resample", "slice", "pad", "elementwise", "layout", "unknown",
]  # fmt: skip

#: categories whose layers take part in the border test (paper 000 analyses the convolutional part)
BORDER_CATEGORIES = frozenset({"conv", "pool", "adaptive_pool", "window_attention"})
#: categories that are always listed in the per-layer table, even when they act as 1x1
LISTED_CATEGORIES = frozenset(
    {"conv", "pool", "adaptive_pool", "linear", "attention", "window_attention", "recurrent"}
)


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
Axes = tuple[AxisEffect, AxisEffect]


class Several(tuple):
    """The layouts of an op that returns several tensors (chunk, split, attention with weights)."""


@dataclass(frozen=True)
class OpEffect:
    """The effect of one op on positions, and the layout(s) of what it returns."""

    category: Category
    axes: Axes = (IDENTITY, IDENTITY)
    layout: Any = None  # a Layout, Several layouts for ops returning tuples, or None for non-tensors
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int | float, ...] | None = None
    dilation: tuple[int, ...] | None = None
    assumption: str | None = None
    unknown: bool = False
    #: other paths through the op (the branches inside an opaque block): each path's effect, per axis; the
    #: receptive fields of the op's output are those of ``axes`` and of every path together
    paths: tuple[Axes, ...] = ()

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


def _holds_tensor(value: Any) -> bool:
    """Whether a recorded argument value had a tensor in it (recorded values replace tensors by None)."""
    found = False

    def visit(item: Any) -> Any:
        nonlocal found
        found = found or item is None
        return item

    fx.node.map_aggregate(value, visit)
    return found


def _merge(raw: Any, concrete: Any, env: Mapping[fx.Node, Any]) -> Any:
    """``raw`` with every node that computed a plain value (an int from ``x.size(3)``) replaced by it."""
    if isinstance(raw, fx.Node):
        return raw if raw in env or _holds_tensor(concrete) else concrete
    if isinstance(raw, (list, tuple)) and isinstance(concrete, (list, tuple)) and len(raw) == len(concrete):
        return type(raw)(_merge(r, c, env) for r, c in zip(raw, concrete, strict=True))
    if isinstance(raw, slice) and isinstance(concrete, slice):  # x[:, :H] with H computed from a shape
        return slice(*(_merge(getattr(raw, a), getattr(concrete, a), env) for a in ("start", "stop", "step")))
    return raw


@dataclass(frozen=True)
class Recorded:
    """What the shape pass recorded of each node at one input size, kept beside the graph (never in fx's
    ``node.meta``, which every analysis of one trace shares): ``outputs``, the ``TensorShape`` of what a node
    returns (nested tuples of them for tuple results; absent for a node returning no tensor), and
    ``arguments``, the ``(args, kwargs)`` a node was called with, tensors replaced by None (how a rule reads
    ``x.size(3)`` as the number it was at this size)."""

    outputs: dict[fx.Node, Any] = field(default_factory=dict)
    arguments: dict[fx.Node, tuple[tuple, dict]] = field(default_factory=dict)


@dataclass
class OpContext:
    """What a rule may look at: the node, its module (for ``call_module``), the input layouts (``env``) and
    what the shape pass recorded at this size (``recorded``): a rule reads the graph through it only."""

    node: fx.Node
    module: nn.Module | None
    env: Mapping[fx.Node, Any] = field(repr=False)
    recorded: Recorded = field(default_factory=Recorded, repr=False)

    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        """Argument by position, else by keyword, else ``default``.

        An argument computed from the input (``F.avg_pool2d(x, x.size(3))``) is a node in the graph; its
        value at the target size, recorded by shape propagation, is returned instead (tensors stay nodes).
        """
        in_args = index < len(self.node.args)
        raw = self.node.args[index] if in_args else self.node.kwargs.get(name, default) if name else default
        values = self.recorded.arguments.get(self.node)
        if values is None:
            return raw
        args, kwargs = values
        concrete = (args[index] if index < len(args) else None) if in_args else kwargs.get(name)
        # tensors stay nodes; plain values computed from shapes become their numbers
        return _merge(raw, concrete, self.env)

    def outputs(self, value: Any = None) -> Any:
        """The recorded ``TensorShape``(s) of what ``value`` (default: this node) returns, None if no tensor."""
        value = self.node if value is None else value
        return self.recorded.outputs.get(value) if isinstance(value, fx.Node) else None

    def layout(self, value: Any) -> Any:
        return self.env.get(value) if isinstance(value, fx.Node) else None

    def shape(self, value: Any) -> tuple[int, ...] | None:
        meta = self.outputs(value)
        return meta.shape if isinstance(meta, TensorShape) else None

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return self.shape(self.node)

    @property
    def tensor_inputs(self) -> list[fx.Node]:
        """Inputs that are single tensors carrying image data, in argument order."""
        return [n for n in self.node.all_input_nodes if is_layout(self.env.get(n))]

    @property
    def input(self) -> fx.Node:
        return self.tensor_inputs[0]

    def layouts_and_shapes(self, values: Iterable[Any] | None = None) -> list[tuple[Layout, tuple[int, ...]]]:
        """(layout, shape) of every image tensor among ``values`` (default: all inputs), tuples unpacked."""
        out: list[tuple[Layout, tuple[int, ...]]] = []
        for value in self.node.all_input_nodes if values is None else values:
            layout = self.layout(value)
            if is_layout(layout):
                out.append((layout, self.shape(value)))
            elif isinstance(layout, Several):
                out.extend(_parts(layout, self.outputs(value)))
        return out


def _parts(layout: Several, metas: Any) -> list[tuple[Layout, tuple[int, ...]]]:
    """(layout, shape) of each tensor of a tuple result, nested tuples (an LSTM's ``(h, c)``) unpacked."""
    out = []
    for part, meta in zip(layout, metas if isinstance(metas, (list, tuple)) else (), strict=False):
        if isinstance(part, Several):
            out.extend(_parts(part, meta))
        elif part and isinstance(meta, TensorShape):
            out.append((part, meta.shape))
    return out


def is_layout(value: Any) -> bool:
    return isinstance(value, tuple) and not isinstance(value, Several)


Rule = Callable[[OpContext], OpEffect]


class RuleRefusal(Exception):
    """Raised by a rule for a node it knows it does not read (an unbatched sequence, ``Tensor.unfold``): the
    node then gets the fallback's assumption and the reason is an analysis warning. Any other exception
    inside a rule is a bug of the rule and stops the analysis (``AnalysisError``, the rule's error chained)."""


#: How an op acts on the channels of an image tensor, declared beside its receptive-field rule (one table
#: for both, read by ``rewriter.analysis.channels``): ``keep``: output channel i is input channel i
#: (element-wise ops, norms, padding, pooling, resampling); ``mix``: new channels computed from the input's
#: (convolutions, linear layers); ``join``: channels of several inputs side by side (concatenation);
#: ``reshape``: the op moves data between dims (flatten, view, permute). None: not declared.
ChannelAction = Literal["keep", "mix", "join", "reshape"]
CHANNEL_ACTIONS = ("keep", "mix", "join", "reshape")


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    channels: ChannelAction | None


_MODULE_RULES: dict[type, _Entry] = {}
_MODULE_RULES_BY_NAME: dict[str, _Entry] = {}
_FUNCTION_RULES: dict[OpKey, _Entry] = {}  # keyed by ``op_keys.op_key``: the callable, or torch's op name


def register_module_rule(
    *classes: type | str, channels: ChannelAction | None = None, replace: bool = False
) -> Callable[[Rule], Rule]:
    """Register a rule for modules of these classes (a class, or its ``module.QualName`` string), and how
    they act on channels (see ``ChannelAction``); a class that has a rule already is refused unless
    ``replace``. ``rewriter.analysis.register_layer`` registers a FLOP formula with it.

    A class registered here is also traced as a leaf: fx records one node for it instead of its insides.
    """

    def decorator(rule: Rule) -> Rule:
        _check_rule(rule, classes, channels)
        for cls in classes:
            table, key = (_MODULE_RULES_BY_NAME, cls) if isinstance(cls, str) else (_MODULE_RULES, cls)
            _refuse_second(table, key, cls if isinstance(cls, str) else qualified_class_name(cls), replace)
        for cls in classes:
            table = _MODULE_RULES_BY_NAME if isinstance(cls, str) else _MODULE_RULES
            table[cls] = _Entry(rule, channels)
        return rule

    return decorator


def _refuse_second(table: Mapping[Any, _Entry], key: Any, what: str, replace: bool) -> None:
    existing = table.get(key)
    if existing is not None and not replace:
        raise ValueError(
            f"{what} has a receptive-field rule already ({getattr(existing.rule, '__qualname__', existing.rule)}); "
            "pass replace=True to replace it"
        )


def _check_rule(rule: Any, targets: Sequence[Any], channels: Any = None) -> None:
    """A rule must be a callable taking an ``OpContext``: registering anything else (a module object that
    shadows the function of the same name, say) would only fail later, at analysis time, as a warning."""
    names = ", ".join(t if isinstance(t, str) else getattr(t, "__name__", repr(t)) for t in targets)
    if not callable(rule) or isinstance(rule, types.ModuleType):
        raise TypeError(
            f"the rule registered for {names} must be a function taking an OpContext, got {rule!r}"
        )
    if channels is not None and channels not in CHANNEL_ACTIONS:
        raise TypeError(f"channels for {names} must be one of {', '.join(CHANNEL_ACTIONS)}, got {channels!r}")


def register_function_rule(
    *ops: Callable[..., Any] | str, channels: ChannelAction | None = None, replace: bool = False
) -> Callable[[Rule], Rule]:
    """Register a rule for these functions (the callables themselves) or tensor methods and torch's ops (by
    name: ``"cat"`` is ``torch.cat`` and ``Tensor.cat``), and how they act on channels (see
    ``ChannelAction``); an op that has a rule already is refused unless ``replace``. A function of your own
    is known by itself, never by its name: registering ``mylib.linear`` leaves ``F.linear`` alone."""

    def decorator(rule: Rule) -> Rule:
        _check_rule(rule, ops, channels)
        keys = [op_key(op) for op in ops]
        for key in keys:
            _refuse_second(_FUNCTION_RULES, key, describe(key), replace)
        for key in keys:
            _FUNCTION_RULES[key] = _Entry(rule, channels)
        return rule

    return decorator


def function_rule(node: fx.Node) -> _Entry | None:
    """The table's entry for the function or tensor method that ``node`` calls, or None."""
    return _FUNCTION_RULES.get(op_key(node.target))


def qualified_class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _module_entry(module: nn.Module) -> _Entry | None:
    for cls in type(module).__mro__:
        entry = _MODULE_RULES.get(cls) or _MODULE_RULES_BY_NAME.get(qualified_class_name(cls))
        if entry is not None:
            return entry
    return None


def module_rule(module: nn.Module) -> Rule | None:
    """The rule for ``module``'s class (or a base class), or None if the table has none."""
    entry = _module_entry(module)
    return entry.rule if entry is not None else None


def has_module_rule(module: nn.Module) -> bool:
    return module_rule(module) is not None and not isinstance(module, nn.Sequential)


def channel_action(module: nn.Module | None, node: fx.Node) -> ChannelAction | None:
    """How the op of ``node`` (a call of ``module``, or a function) acts on channels, from the rule table."""
    entry = _module_entry(module) if module is not None else function_rule(node)
    return entry.channels if entry is not None else None


def target_name(node: fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


# --------------------------------------------------------------------------------------------------
# helpers shared by the rules


def as_tuple(value: Any, n: int) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value) * n if len(value) == 1 else tuple(value)
    return (value,) * n


def per_axis(layout: Layout, dims: Sequence[int], effects: Sequence[AxisEffect]) -> Axes:
    """Place one effect per tensor dim onto the spatial axis that dim indexes."""
    out = [IDENTITY, IDENTITY]
    for d, effect in zip(dims, effects, strict=True):
        for factor in layout[d]:
            if factor.axis is not None:
                out[factor.axis] = effect
    return out[0], out[1]


def windowed(
    ctx: OpContext, windows: Sequence[tuple[int, int]], *, group_size: int | Literal[False] | None = False
) -> tuple[Axes, Layout, str | None]:
    """Effects, output layout and (where the layout could not be followed exactly) the assumption made, of an
    op that slides windows ``(effective kernel, stride)`` over the last ``len(windows)`` dims of its input
    (see ``layouts.window``). ``group_size``: False for an op that keeps its channels (pooling); None for a
    convolution that mixes all of them; the input channels one output reads for a grouped one."""
    layout = ctx.layout(ctx.input)
    out_shape = ctx.out_shape
    channel_dim = None if group_size is False else len(layout) - len(windows) - 1
    result = windowing.window(
        layout, out_shape, windows, channel_dim=channel_dim, group_size=group_size or None
    )
    axes = tuple(AxisEffect(m.span, Fraction(m.stride)) for m in result.mixes)
    assumption = None if result.exact else (
        f"'{target_name(ctx.node)}' slides its window over a dim that holds positions of several factors "
        "(or groups that cut across them): the window is assumed to reach all of them"
    )  # fmt: skip
    return axes, result.layout, assumption  # type: ignore[return-value]


def mixing(layout: Layout, dims: Iterable[int], out_layout: Layout) -> tuple[Axes, Layout]:
    """Effects of an op that combines every value along ``dims`` (see ``layouts.mix``), and its output layout."""
    mixes, out = layouts.mix(layout, dims, out_layout)
    axes = tuple(UNBOUNDED if m.unbounded else AxisEffect(m.span, Fraction(m.stride)) for m in mixes)
    return axes, out  # type: ignore[return-value]


def resample_effect(in_size: int, out_size: int, *, kernel: int) -> AxisEffect:
    """An op mapping ``in_size`` positions to ``out_size`` with windows of ``kernel`` input positions."""
    if in_size == out_size and kernel == 1:
        return IDENTITY
    return AxisEffect(kernel=kernel, stride=Fraction(in_size, out_size))


def elementwise(ctx: OpContext, category: Category = "elementwise", **kwargs: Any) -> OpEffect:
    shape = ctx.out_shape
    if shape is None:
        return OpEffect(category, layout=None, **kwargs)
    return OpEffect(category, layout=layouts.broadcast(ctx.layouts_and_shapes(), shape), **kwargs)


def reshaped(ctx: OpContext) -> OpEffect:
    """The layout effect of a reshape of the first input to the output shape, flagged when approximate."""
    x = ctx.input
    layout, exact = layouts.reshape(ctx.layout(x), ctx.shape(x), ctx.out_shape)
    assumption = None if exact else (
        f"'{target_name(ctx.node)}' regroups positions unevenly ({list(ctx.shape(x))} -> {list(ctx.out_shape)}): "
        "each resulting dim is assumed to carry all of them"
    )  # fmt: skip
    return OpEffect("layout", layout=layout, assumption=assumption, unknown=not exact)
