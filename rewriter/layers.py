"""How each op acts on the receptive field: one small rule per op kind, looked up in a table.

A rule looks at one traced node (its module or function, arguments, and the layouts and shapes of its
inputs) and returns an ``OpEffect``: per spatial axis, the effective kernel and stride it applies, or that
it mixes all positions (unbounded receptive field), plus the layout of its output. Ops known to leave
positions alone (activations, norms, additions, reshapes) have rules too, so that an op missing from the
table is *reported* with the assumption made, never silently treated as harmless (fvcore's approach to
FLOP handlers, applied to receptive fields).

Third parties can teach the analyzer their ops with ``register_module_rule`` and
``register_function_rule``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import nn

from . import layouts
from .layouts import AXES, NONE, Layout

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
            if isinstance(self.env.get(n), tuple) and _is_layout(self.env[n])
        ]

    @property
    def input(self) -> fx.Node:
        return self.tensor_inputs[0]


def _is_layout(value: Any) -> bool:
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
            return _unknown_module(ctx)
        return rule(ctx)
    rule = _FUNCTION_RULES.get(target_name(ctx.node))
    if rule is None:
        return _unknown_function(ctx)
    return rule(ctx)


# --------------------------------------------------------------------------------------------------
# helpers


def _as_tuple(value: Any, n: int) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value) * n if len(value) == 1 else tuple(value)
    return (value,) * n


def _per_axis(
    layout: Layout, dims: Sequence[int], effects: Sequence[AxisEffect]
) -> tuple[AxisEffect, AxisEffect]:
    """Place one effect per tensor dim onto the spatial axes those dims carry."""
    out = [IDENTITY, IDENTITY]
    for d, effect in zip(dims, effects, strict=True):
        for axis in layout[d]:
            out[axis] = effect
    return out[0], out[1]


def _unbounded_on(axes: frozenset[int]) -> tuple[AxisEffect, AxisEffect]:
    return tuple(UNBOUNDED if a in axes else IDENTITY for a in AXES)  # type: ignore[return-value]


def _window_effects(
    ctx: OpContext, layout: Layout, windows: Sequence[tuple[int, int]]
) -> tuple[AxisEffect, ...]:
    """Effects of ops that combine ``k`` neighbours with stride ``s`` along the last dims."""
    n = len(windows)
    return _per_axis(
        layout, range(len(layout) - n, len(layout)), [AxisEffect(k, Fraction(s)) for k, s in windows]
    )


def _spatial_sizes(layout: Layout, shape: Sequence[int], axis: int) -> list[int]:
    return [shape[d] for d, axes in enumerate(layout) if axis in axes]


def _resample_effect(in_size: int, out_size: int, *, kernel: int) -> AxisEffect:
    """An op mapping ``in_size`` positions to ``out_size`` with windows of ``kernel`` input positions."""
    if in_size == out_size and kernel == 1:
        return IDENTITY
    return AxisEffect(kernel=kernel, stride=Fraction(in_size, out_size))


def _elementwise(ctx: OpContext, category: Category = "elementwise", **kwargs) -> OpEffect:
    shape = ctx.out_shape
    if shape is None:
        return OpEffect(category, layout=None, **kwargs)
    layout = layouts.broadcast([ctx.layout(n) for n in ctx.tensor_inputs], len(shape))
    return OpEffect(category, layout=layout, **kwargs)


def _reshaped(ctx: OpContext) -> Layout:
    x = ctx.input
    return layouts.reshape(ctx.layout(x), ctx.shape(x), ctx.out_shape)


def _unknown_module(ctx: OpContext) -> OpEffect:
    """An opaque module: infer a stride from the shape change, assume kernel = stride (1x1 if unchanged)."""
    name = type(ctx.module).__name__
    if not ctx.tensor_inputs or ctx.out_shape is None:
        return OpEffect(
            "unknown", layout=None, unknown=True, assumption=f"{name}: no tensor in or out; ignored"
        )
    x = ctx.input
    in_layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    out_layout = in_layout if len(in_shape) == len(out_shape) else _reshaped(ctx)
    axes = []
    for axis in AXES:
        before, after = _spatial_sizes(in_layout, in_shape, axis), _spatial_sizes(out_layout, out_shape, axis)
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


def _unknown_function(ctx: OpContext) -> OpEffect:
    name = target_name(ctx.node)
    shape = ctx.out_shape
    if not ctx.tensor_inputs or shape is None:
        return OpEffect("unknown", layout=None)  # no image data in or out: nothing to assume
    x = ctx.input
    if len(ctx.shape(x)) == len(shape):
        layout = layouts.broadcast([ctx.layout(n) for n in ctx.tensor_inputs], len(shape))
    else:
        layout = _reshaped(ctx)
    return OpEffect(
        "unknown",
        layout=layout,
        unknown=True,
        assumption=f"unknown op '{name}': treated as 1x1, stride 1 (no receptive-field growth)",
    )


# --------------------------------------------------------------------------------------------------
# modules


@register_module_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    layout = ctx.layout(ctx.input)
    k, s, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    return OpEffect(
        "conv", _window_effects(ctx, layout, windows), layout, kernel_size=k, stride=s, dilation=d
    )


@register_module_rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    layout = ctx.layout(ctx.input)
    k, s, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    effects = [
        AxisEffect(math.ceil((di * (ki - 1) + 1) / si), Fraction(1, si))
        for ki, si, di in zip(k, s, d, strict=True)
    ]
    axes = _per_axis(layout, range(len(layout) - len(k), len(layout)), effects)
    return OpEffect(
        "conv", axes, layout, kernel_size=k, stride=s, dilation=d,
        assumption="transposed convolution: each output sees ceil(k/stride) input positions",
    )  # fmt: skip


@register_module_rule(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _pool(ctx, m.kernel_size, m.stride, getattr(m, "dilation", 1), rank=_pool_rank(m))


@register_module_rule(nn.LPPool1d, nn.LPPool2d)
def _lp_pool_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _pool(ctx, m.kernel_size, m.stride, 1, rank=_pool_rank(m))


def _pool_rank(m: nn.Module) -> int:
    return int(type(m).__name__[-2])


def _pool(ctx: OpContext, kernel: Any, stride: Any, dilation: Any, *, rank: int) -> OpEffect:
    layout = ctx.layout(ctx.input)
    k = _as_tuple(kernel, rank)
    s = _as_tuple(stride if stride not in (None, ()) else kernel, rank)
    d = _as_tuple(dilation, rank)
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    return OpEffect(
        "pool", _window_effects(ctx, layout, windows), layout, kernel_size=k, stride=s, dilation=d
    )


@register_module_rule(
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
def _adaptive_pool_module(ctx: OpContext) -> OpEffect:
    return _adaptive_pool(ctx, _pool_rank(ctx.module))


def _adaptive_pool(ctx: OpContext, n: int) -> OpEffect:
    """Output size 1 on an axis: global. Otherwise the largest window and the fractional stride n_in/n_out."""
    x = ctx.input
    layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    rank = len(out_shape)
    dims = range(rank - n, rank)
    effects, kernels, strides = [], [], []
    for d in dims:
        n_in, n_out = in_shape[d], out_shape[d]
        if n_out == 1:
            effects.append(UNBOUNDED)
            kernels.append(n_in)
        else:
            window = max(math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out for i in range(n_out))
            effects.append(_resample_effect(n_in, n_out, kernel=window))
            kernels.append(window)
        strides.append(n_in / n_out if n_in % n_out else n_in // n_out)
    return OpEffect(
        "adaptive_pool",
        _per_axis(layout, dims, effects),
        layout,
        kernel_size=tuple(kernels),
        stride=tuple(strides),
    )


@register_module_rule(nn.Linear, nn.Bilinear, nn.LazyLinear)
def _linear_module(ctx: OpContext) -> OpEffect:
    return _linear(ctx)


def _linear(ctx: OpContext) -> OpEffect:
    """A Linear mixes its last dim: a 1x1 op per position, unless that dim carries flattened positions."""
    layout = ctx.layout(ctx.input)
    return OpEffect("linear", _unbounded_on(layout[-1]), (*layout[:-1], NONE))


@register_module_rule(nn.MultiheadAttention)
def _mha_module(ctx: OpContext) -> OpEffect:
    query = ctx.arg(0, "query")
    key = ctx.arg(1, "key", query)
    key_layout = ctx.layout(key) or ctx.layout(query)
    seq_dim = 1 if len(key_layout) == 3 and ctx.module.batch_first else 0
    q_layout = ctx.layout(query) or key_layout
    return OpEffect("attention", _unbounded_on(key_layout[seq_dim]), ((*q_layout[:-1], NONE), None))


@register_module_rule(
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.Transformer
)
def _transformer_module(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    return OpEffect("attention", _unbounded_on(layouts.spatial_axes(layout)), layout)


@register_module_rule(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
def _upsample_module(ctx: OpContext) -> OpEffect:
    return _resample(ctx, ctx.module.mode)


_INTERPOLATION_TAPS = {
    "nearest": 1,
    "nearest-exact": 1,
    "linear": 2,
    "bilinear": 2,
    "trilinear": 2,
    "bicubic": 4,
}


def _resample(ctx: OpContext, mode: str, category: Category = "resample") -> OpEffect:
    x = ctx.input
    layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    taps = _INTERPOLATION_TAPS.get(mode, 2)
    dims = [d for d in range(len(out_shape)) if layout[d]]
    effects = []
    for d in dims:
        n_in, n_out = in_shape[d], out_shape[d]
        effects.append(
            _resample_effect(n_in, n_out, kernel=taps if n_out > n_in else max(taps, -(-n_in // n_out)))
        )
    return OpEffect(category, _per_axis(layout, dims, effects), layout)


@register_module_rule(nn.PixelShuffle, nn.PixelUnshuffle)
def _pixel_shuffle_module(ctx: OpContext) -> OpEffect:
    return _pixel_shuffle(ctx)


def _pixel_shuffle(ctx: OpContext) -> OpEffect:
    x = ctx.input
    layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    dims = range(len(out_shape) - 2, len(out_shape))
    effects = [
        _resample_effect(in_shape[d], out_shape[d], kernel=max(1, in_shape[d] // out_shape[d])) for d in dims
    ]
    return OpEffect("resample", _per_axis(layout, dims, effects), layout)


@register_module_rule(nn.Flatten)
def _flatten_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return OpEffect("layout", layout=layouts.flatten(ctx.layout(ctx.input), m.start_dim, m.end_dim))


@register_module_rule(nn.Unflatten)
def _unflatten_module(ctx: OpContext) -> OpEffect:
    return OpEffect("layout", layout=_reshaped(ctx))


@register_module_rule(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def _softmax_module(ctx: OpContext) -> OpEffect:
    return _softmax_over(ctx, ctx.module.dim)


def _softmax_over(ctx: OpContext, dim: int | None) -> OpEffect:
    layout = ctx.layout(ctx.input)
    mixed = layouts.spatial_axes(layout, layouts.normalize_dims(dim, len(layout)))
    return OpEffect("reduction", _unbounded_on(mixed), layout)


_ELEMENTWISE_MODULES: tuple[type, ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LocalResponseNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.LogSigmoid, nn.GLU, nn.Softmax2d,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.ChannelShuffle,
)  # fmt: skip
if hasattr(nn, "RMSNorm"):
    _ELEMENTWISE_MODULES += (nn.RMSNorm,)
register_module_rule(*_ELEMENTWISE_MODULES)(_elementwise)


# torchvision's Swin blocks: windowed attention is a local op (window = kernel); patch merging concatenates
# each 2x2 neighbourhood and projects it, a 2x2 stride-2 convolution.
@register_module_rule(
    "torchvision.models.swin_transformer.ShiftedWindowAttention",
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2",
)
def _shifted_window_attention(ctx: OpContext) -> OpEffect:
    layout, shape = ctx.layout(ctx.input), ctx.shape(ctx.input)
    window = list(ctx.module.window_size)
    dims = [d for d in range(len(layout)) if layout[d]][:2]
    effects = []
    for d, w in zip(dims, window, strict=False):
        effects.append(UNBOUNDED if w >= shape[d] else AxisEffect(w, Fraction(1)))
    return OpEffect(
        "window_attention", _per_axis(layout, dims, effects), layout, kernel_size=tuple(window), stride=(1, 1),
        assumption="windowed attention: treated as a kernel of the window size (window shifts ignored); "
        "global where the window covers the feature map",
    )  # fmt: skip


@register_module_rule(
    "torchvision.models.swin_transformer.PatchMerging", "torchvision.models.swin_transformer.PatchMergingV2"
)
def _patch_merging(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    dims = [d for d in range(len(layout)) if layout[d]][:2]
    axes = _per_axis(layout, dims, [AxisEffect(2, Fraction(2))] * len(dims))
    return OpEffect("conv", axes, layout, kernel_size=(2, 2), stride=(2, 2), dilation=(1, 1))


# --------------------------------------------------------------------------------------------------
# functions and tensor methods

register_function_rule(
    "add", "iadd", "add_", "sub", "isub", "rsub", "mul", "imul", "mul_", "truediv", "div", "itruediv", "div_",
    "floordiv", "mod", "pow", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "square", "sign", "erf",
    "sin", "cos", "maximum", "minimum", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "where",
    "masked_fill", "lerp", "addcmul",
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid", "hardtanh",
    "hardtanh_", "leaky_relu", "elu", "selu", "celu", "softplus", "mish", "sigmoid", "sigmoid_", "tanh", "glu",
    "logsigmoid", "prelu",
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
    "stochastic_depth", "layer_norm", "batch_norm", "group_norm", "instance_norm", "local_response_norm",
    "rms_norm", "normalize",
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to", "type", "type_as", "expand",
    "expand_as", "pad", "roll", "channel_shuffle", "native_channel_shuffle", "_patch_merging_pad",
)(_elementwise)  # fmt: skip


@register_function_rule("cat", "concat", "concatenate")
def _cat(ctx: OpContext) -> OpEffect:
    return _elementwise(ctx, "layout")


@register_function_rule("stack")
def _stack(ctx: OpContext) -> OpEffect:
    dim = ctx.arg(1, "dim", 0)
    rank = len(ctx.out_shape)
    inserted = [layouts.unsqueeze(ctx.layout(n), dim % rank) for n in ctx.tensor_inputs]
    return OpEffect("layout", layout=layouts.broadcast(inserted, rank))


@register_function_rule("view", "reshape", "view_as", "reshape_as", "unflatten")
def _reshape(ctx: OpContext) -> OpEffect:
    return OpEffect("layout", layout=_reshaped(ctx))


@register_function_rule("flatten")
def _flatten(ctx: OpContext) -> OpEffect:
    start, end = ctx.arg(1, "start_dim", 0), ctx.arg(2, "end_dim", -1)
    return OpEffect("layout", layout=layouts.flatten(ctx.layout(ctx.input), start, end))


@register_function_rule("permute")
def _permute(ctx: OpContext) -> OpEffect:
    dims = ctx.node.args[1:] if len(ctx.node.args) > 1 else ctx.node.kwargs["dims"]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return OpEffect("layout", layout=layouts.permute(ctx.layout(ctx.input), dims))


@register_function_rule("transpose", "swapaxes", "swapdims")
def _transpose(ctx: OpContext) -> OpEffect:
    return OpEffect(
        "layout", layout=layouts.transpose(ctx.layout(ctx.input), ctx.arg(1, "dim0"), ctx.arg(2, "dim1"))
    )


@register_function_rule("t")
def _t(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    return OpEffect("layout", layout=layout[::-1])


@register_function_rule("movedim", "moveaxis")
def _movedim(ctx: OpContext) -> OpEffect:
    src, dst = ctx.arg(1, "source"), ctx.arg(2, "destination")
    src, dst = (src,) if isinstance(src, int) else src, (dst,) if isinstance(dst, int) else dst
    return OpEffect("layout", layout=layouts.movedim(ctx.layout(ctx.input), src, dst))


@register_function_rule("squeeze")
def _squeeze(ctx: OpContext) -> OpEffect:
    x = ctx.input
    return OpEffect("layout", layout=layouts.squeeze(ctx.layout(x), ctx.shape(x), ctx.arg(1, "dim")))


@register_function_rule("unsqueeze")
def _unsqueeze(ctx: OpContext) -> OpEffect:
    return OpEffect("layout", layout=layouts.unsqueeze(ctx.layout(ctx.input), ctx.arg(1, "dim")))


@register_function_rule("chunk", "split", "tensor_split", "split_with_sizes")
def _split(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    meta = ctx.node.meta.get("tensor_meta")
    count = len(meta) if isinstance(meta, (list, tuple)) else 1
    return OpEffect("layout", layout=(layout,) * count)


@register_function_rule("unbind")
def _unbind(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    dim = ctx.arg(1, "dim", 0) % len(layout)
    meta = ctx.node.meta.get("tensor_meta")
    piece = tuple(a for d, a in enumerate(layout) if d != dim)
    return OpEffect("layout", layout=(piece,) * len(meta))


@register_function_rule("getitem")
def _getitem(ctx: OpContext) -> OpEffect:
    container, index = ctx.node.args
    value = ctx.layout(container)
    if isinstance(value, tuple) and not _is_layout(value):
        return OpEffect("layout", layout=value[index])  # an element of a tuple (chunk, split, attention)
    return _index_tensor(ctx, value, index)


def _index_tensor(ctx: OpContext, layout: Layout, index: Any) -> OpEffect:
    """Basic indexing: ints drop dims, None inserts them, strided slices subsample (stride, kernel 1)."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
        return _unknown_function(ctx)
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    out, effects, d = [], [IDENTITY, IDENTITY], 0
    for item in items:
        if item is Ellipsis:
            for _ in range(len(layout) - explicit):
                out.append(layout[d])
                d += 1
        elif item is None:
            out.append(NONE)
        elif isinstance(item, int):
            d += 1
        elif isinstance(item, slice):
            step = item.step or 1
            if step != 1:
                for axis in layout[d]:
                    effects[axis] = AxisEffect(1, Fraction(step))
            out.append(layout[d])
            d += 1
    out.extend(layout[d:])
    category: Category = "slice" if any(not e.is_identity for e in effects) else "layout"
    return OpEffect(category, tuple(effects), tuple(out))


@register_function_rule("select", "narrow")
def _select(ctx: OpContext) -> OpEffect:
    x = ctx.input
    return OpEffect(
        "layout", layout=_reshaped(ctx) if len(ctx.out_shape) != len(ctx.shape(x)) else ctx.layout(x)
    )


_REDUCTIONS = ("mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod", "nansum",
               "nanmean", "median", "argmax", "argmin", "any", "all", "std_mean", "var_mean")  # fmt: skip


@register_function_rule(*_REDUCTIONS)
def _reduction(ctx: OpContext) -> OpEffect:
    """Reducing dims that carry positions mixes all of them (``x.mean((2, 3))`` is global pooling)."""
    name = target_name(ctx.node)
    if name in ("max", "min") and len(ctx.tensor_inputs) > 1:
        return _elementwise(ctx)  # torch.max(a, b) is element-wise
    x = ctx.input
    layout, in_shape = ctx.layout(x), ctx.shape(x)
    dim_index = 2 if name == "norm" else 1
    dims = ctx.arg(dim_index, "dim")
    if name == "amax" or name == "amin":
        dims = None if dims in ((), []) else dims
    reduced = layouts.normalize_dims(dims if not isinstance(dims, (float, str)) else None, len(in_shape))
    meta = ctx.node.meta.get("tensor_meta")
    out_meta = meta[0] if isinstance(meta, (list, tuple)) else meta
    keepdim = out_meta is not None and len(out_meta.shape) == len(in_shape) and len(reduced) > 0
    out_layout = layouts.reduce(layout, reduced, keepdim=keepdim)
    if isinstance(meta, (list, tuple)):
        out_layout = (out_layout,) * len(meta)
    mixed = layouts.spatial_axes(layout, reduced)
    return OpEffect("reduction" if mixed else "elementwise", _unbounded_on(mixed), out_layout)


@register_function_rule("softmax", "log_softmax", "softmin", "_softmax")
def _softmax(ctx: OpContext) -> OpEffect:
    return _softmax_over(ctx, ctx.arg(1, "dim"))


@register_function_rule("matmul", "bmm", "mm", "baddbmm")
def _matmul(ctx: OpContext) -> OpEffect:
    """``a @ b`` contracts a's last dim with b's second-to-last: positions there are mixed."""
    name = target_name(ctx.node)
    a, b = (ctx.arg(1), ctx.arg(2)) if name == "baddbmm" else (ctx.arg(0), ctx.arg(1))
    la, lb = ctx.layout(a), ctx.layout(b)
    mixed = set()
    if la:
        mixed |= la[-1]
    if lb:
        mixed |= lb[-2] if len(lb) >= 2 else lb[-1]
    rank = len(ctx.out_shape)
    parts = []
    if la:
        parts.append((*la[:-1], NONE) if len(la) >= 2 else ())
    if lb and len(lb) >= 2:
        parts.append((*((NONE,) * (len(lb) - 1)), lb[-1]))
    out_layout = layouts.broadcast([p for p in parts if p], rank)
    return OpEffect("attention" if mixed else "linear", _unbounded_on(frozenset(mixed)), out_layout)


@register_function_rule("einsum")
def _einsum(ctx: OpContext) -> OpEffect:
    equation = ctx.node.args[0].replace(" ", "")
    operands = ctx.node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if "..." in equation or not rhs:
        return _unknown_function(ctx)
    letter_axes: dict[str, set[int]] = {}
    for term, operand in zip(terms, operands, strict=True):
        layout = ctx.layout(operand)
        for letter, axes in zip(term, layout or (), strict=False):
            letter_axes.setdefault(letter, set()).update(axes)
    mixed = set()
    for letter, axes in letter_axes.items():
        if letter not in rhs:
            mixed |= axes
    out_layout = tuple(frozenset(letter_axes.get(letter, ())) for letter in rhs)
    return OpEffect("attention" if mixed else "linear", _unbounded_on(frozenset(mixed)), out_layout)


@register_function_rule("scaled_dot_product_attention")
def _sdpa(ctx: OpContext) -> OpEffect:
    query, key = ctx.arg(0, "query"), ctx.arg(1, "key")
    k_layout = ctx.layout(key) or ctx.layout(query)
    q_layout = ctx.layout(query) or k_layout
    return OpEffect("attention", _unbounded_on(k_layout[-2]), q_layout)


@register_function_rule("linear")
def _linear_function(ctx: OpContext) -> OpEffect:
    return _linear(ctx)


@register_function_rule("conv1d", "conv2d", "conv3d")
def _conv_function(ctx: OpContext) -> OpEffect:
    weight = ctx.arg(1, "weight")
    n = len(ctx.shape(weight)) - 2
    k = ctx.shape(weight)[2:]
    s = _as_tuple(ctx.arg(3, "stride", 1), n)
    d = _as_tuple(ctx.arg(5, "dilation", 1), n)
    layout = ctx.layout(ctx.input)
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    return OpEffect(
        "conv", _window_effects(ctx, layout, windows), layout, kernel_size=k, stride=s, dilation=d
    )


@register_function_rule("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d")
def _pool_function(ctx: OpContext) -> OpEffect:
    name = target_name(ctx.node)
    rank = int(name[-2])
    dilation = ctx.arg(4, "dilation", 1) if name.startswith("max") else 1
    return _pool(ctx, ctx.arg(1, "kernel_size"), ctx.arg(2, "stride", None), dilation, rank=rank)


@register_function_rule(
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
)  # fmt: skip
def _adaptive_pool_function(ctx: OpContext) -> OpEffect:
    return _adaptive_pool(ctx, int(target_name(ctx.node)[-2]))


@register_function_rule("interpolate", "upsample", "upsample_nearest", "upsample_bilinear")
def _interpolate(ctx: OpContext) -> OpEffect:
    mode = ctx.arg(3, "mode", "nearest")
    name = target_name(ctx.node)
    if name == "upsample_bilinear":
        mode = "bilinear"
    return _resample(ctx, mode)


@register_function_rule("pixel_shuffle", "pixel_unshuffle")
def _pixel_shuffle_function(ctx: OpContext) -> OpEffect:
    return _pixel_shuffle(ctx)


__all__ = [
    "AXES",
    "BORDER_CATEGORIES",
    "IDENTITY",
    "UNBOUNDED",
    "AxisEffect",
    "OpContext",
    "OpEffect",
    "effect_of",
    "has_module_rule",
    "register_function_rule",
    "register_module_rule",
    "target_name",
]
