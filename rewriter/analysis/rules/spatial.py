"""Ops with a kernel or a stride: convolutions, pooling, adaptive pooling, resampling, windowed attention."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from torch import nn

from .. import layouts, windowing
from ._base import (
    UNBOUNDED,
    AxisEffect,
    Category,
    OpContext,
    OpEffect,
    RuleRefusal,
    as_tuple,
    per_axis,
    register_function_rule,
    register_module_rule,
    resample_effect,
    target_name,
    windowed,
)


@register_module_rule(nn.Conv1d, nn.Conv2d, nn.Conv3d, channels="mix")
def _conv_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _conv(ctx, tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation), m.in_channels // m.groups)


def _conv(ctx: OpContext, k: tuple, s: tuple, d: tuple, group_size: int) -> OpEffect:
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    axes, out, assumption = windowed(ctx, windows, group_size=group_size)
    return OpEffect(
        "conv", axes, out, kernel_size=k, stride=s, dilation=d, assumption=assumption,
        unknown=assumption is not None,
    )  # fmt: skip


@register_module_rule(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, channels="mix")
def _conv_transpose_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    layout = ctx.layout(ctx.input)
    k, s, d = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    effects = [
        AxisEffect(math.ceil((di * (ki - 1) + 1) / si), Fraction(1, si))
        for ki, si, di in zip(k, s, d, strict=True)
    ]
    axes = per_axis(layout, range(len(layout) - len(k), len(layout)), effects)
    return OpEffect(
        "conv",
        axes,
        layouts.resized(layout, ctx.out_shape),
        kernel_size=k,
        stride=s,
        dilation=d,
        assumption="transposed convolution: each output sees ceil(k/stride) input positions",
    )


@register_module_rule(
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, channels="keep"
)
def _pool_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _pool(ctx, m.kernel_size, m.stride, getattr(m, "dilation", 1), rank=_pool_rank(m))


@register_module_rule(nn.LPPool1d, nn.LPPool2d, channels="keep")
def _lp_pool_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _pool(ctx, m.kernel_size, m.stride, 1, rank=_pool_rank(m))


def _pool_rank(m: nn.Module) -> int:
    """1, 2 or 3 from the torch.nn class a pooling module is (or derives from: timm's MaxPool2dSame)."""
    cls = next(
        c for c in type(m).__mro__ if c.__module__.startswith("torch.nn") and c.__name__[-2:-1].isdigit()
    )
    return int(cls.__name__[-2])


def _pool(ctx: OpContext, kernel: Any, stride: Any, dilation: Any, *, rank: int) -> OpEffect:
    k = as_tuple(kernel, rank)
    s = as_tuple(stride if stride not in (None, ()) else kernel, rank)
    d = as_tuple(dilation, rank)
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    axes, out, assumption = windowed(ctx, windows)
    return OpEffect(
        "pool", axes, out, kernel_size=k, stride=s, dilation=d, assumption=assumption,
        unknown=assumption is not None,
    )  # fmt: skip


@register_module_rule(
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    channels="keep",
)
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
            effects.append(resample_effect(n_in, n_out, kernel=window))
            kernels.append(window)
        strides.append(n_in / n_out if n_in % n_out else n_in // n_out)
    return OpEffect(
        "adaptive_pool",
        per_axis(layout, dims, effects),
        layouts.resized(layout, out_shape),
        kernel_size=tuple(kernels),
        stride=tuple(strides),
    )


_PAD_MODULES = tuple(
    getattr(nn, f"{kind}Pad{rank}d")
    for kind in ("Zero", "Constant", "Reflection", "Replication", "Circular")
    for rank in (1, 2, 3)
    if hasattr(nn, f"{kind}Pad{rank}d")
)


@register_module_rule(*_PAD_MODULES, channels="keep")
def _pad_module(ctx: OpContext) -> OpEffect:
    return _pad(ctx)


@register_function_rule("pad", "_patch_merging_pad", channels="keep")
def _pad_function(ctx: OpContext) -> OpEffect:
    return _pad(ctx)


def _pad(ctx: OpContext) -> OpEffect:
    """Explicit padding (``F.pad``, ``nn.ZeroPad2d``, BlurPool's reflection pad) moves no position: the
    receptive field stays (padding is ignored, as for a conv's own), and the spatial dims keep their axes at
    the padded size, so the ops after it are followed as before."""
    layout, exact = windowing.padded(ctx.layout(ctx.input), ctx.out_shape)
    assumption = None if exact else (
        f"'{target_name(ctx.node)}' pads a dim that holds positions of several factors: the positions after "
        "it are not followed exactly"
    )  # fmt: skip
    return OpEffect("pad", layout=layout, assumption=assumption, unknown=not exact)


@register_module_rule(nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d, channels="keep")
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
    dims = [d for d in range(len(out_shape)) if layouts.axes_of(layout[d])]
    effects = []
    for d in dims:
        n_in, n_out = in_shape[d], out_shape[d]
        effects.append(
            resample_effect(n_in, n_out, kernel=taps if n_out > n_in else max(taps, -(-n_in // n_out)))
        )
    return OpEffect(category, per_axis(layout, dims, effects), layouts.resized(layout, out_shape))


@register_module_rule(nn.PixelShuffle, nn.PixelUnshuffle)
def _pixel_shuffle_module(ctx: OpContext) -> OpEffect:
    return _pixel_shuffle(ctx)


def _pixel_shuffle(ctx: OpContext) -> OpEffect:
    x = ctx.input
    layout, in_shape, out_shape = ctx.layout(x), ctx.shape(x), ctx.out_shape
    dims = range(len(out_shape) - 2, len(out_shape))
    effects = [
        resample_effect(in_shape[d], out_shape[d], kernel=max(1, in_shape[d] // out_shape[d])) for d in dims
    ]
    return OpEffect("resample", per_axis(layout, dims, effects), layouts.resized(layout, out_shape))


# torchvision's Swin blocks: windowed attention is a local op (window = kernel); patch merging concatenates
# each 2x2 neighbourhood and projects it, a 2x2 stride-2 convolution.
@register_module_rule(
    "torchvision.models.swin_transformer.ShiftedWindowAttention",
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2",
)
def _shifted_window_attention(ctx: OpContext) -> OpEffect:
    layout, shape = ctx.layout(ctx.input), ctx.shape(ctx.input)
    window = list(ctx.module.window_size)
    dims = [d for d in range(len(layout)) if layouts.axes_of(layout[d])][:2]
    effects = []
    for d, w in zip(dims, window, strict=False):
        effects.append(UNBOUNDED if w >= shape[d] else AxisEffect(w, Fraction(1)))
    return OpEffect(
        "window_attention",
        per_axis(layout, dims, effects),
        layout,
        kernel_size=tuple(window),
        stride=(1, 1),
        assumption="windowed attention: treated as a kernel of the window size (window shifts ignored); "
        "global where the window covers the feature map",
    )


@register_module_rule(
    "torchvision.models.swin_transformer.PatchMerging", "torchvision.models.swin_transformer.PatchMergingV2"
)
def _patch_merging(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    dims = [d for d in range(len(layout)) if layouts.axes_of(layout[d])][:2]
    axes = per_axis(layout, dims, [AxisEffect(2, Fraction(2))] * len(dims))
    out = layouts.resized(layout, ctx.out_shape)
    return OpEffect("conv", axes, out, kernel_size=(2, 2), stride=(2, 2), dilation=(1, 1))


@register_function_rule("conv1d", "conv2d", "conv3d", channels="mix")
def _conv_function(ctx: OpContext) -> OpEffect:
    weight = ctx.shape(ctx.arg(1, "weight"))
    n = len(weight) - 2
    s = as_tuple(ctx.arg(3, "stride", 1), n)
    d = as_tuple(ctx.arg(5, "dilation", 1), n)
    return _conv(ctx, tuple(weight[2:]), s, d, weight[1])  # the weight is [out, in / groups, *kernel]


@register_function_rule(
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", channels="keep"
)
def _pool_function(ctx: OpContext) -> OpEffect:
    name = target_name(ctx.node)
    rank = int(name[-2])
    dilation = ctx.arg(4, "dilation", 1) if name.startswith("max") else 1
    return _pool(ctx, ctx.arg(1, "kernel_size"), ctx.arg(2, "stride", None), dilation, rank=rank)


@register_function_rule(
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    channels="keep",
)
def _adaptive_pool_function(ctx: OpContext) -> OpEffect:
    return _adaptive_pool(ctx, int(target_name(ctx.node)[-2]))


@register_function_rule("interpolate", "upsample", "upsample_nearest", "upsample_bilinear", channels="keep")
def _interpolate(ctx: OpContext) -> OpEffect:
    mode = ctx.arg(3, "mode", "nearest")
    name = target_name(ctx.node)
    if name == "upsample_bilinear":
        mode = "bilinear"
    return _resample(ctx, mode)


@register_function_rule("pixel_shuffle", "pixel_unshuffle")
def _pixel_shuffle_function(ctx: OpContext) -> OpEffect:
    return _pixel_shuffle(ctx)


@register_module_rule(nn.Unfold)
def _unfold_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _unfold(ctx, m.kernel_size, m.dilation, m.padding, m.stride)


@register_function_rule("unfold")
def _unfold_function(ctx: OpContext) -> OpEffect:
    if ctx.node.op == "call_method":  # Tensor.unfold(dim, size, step): another op
        raise RuleRefusal("Tensor.unfold windows are not read")
    return _unfold(ctx, ctx.arg(1, "kernel_size"), ctx.arg(2, "dilation", 1), ctx.arg(3, "padding", 0),
                   ctx.arg(4, "stride", 1))  # fmt: skip


def _unfold(ctx: OpContext, kernel: Any, dilation: Any, padding: Any, stride: Any) -> OpEffect:
    """im2col: ``[N, C, H, W]`` -> ``[N, C*k*k, L]``, each column one k x k block. Counted where the block is
    gathered (as for PixelUnshuffle): a k x k window with the stride; the blocks' grid is the last dim."""
    k, d, p, s = (as_tuple(v, 2) for v in (kernel, dilation, padding, stride))
    windows = [(di * (ki - 1) + 1, si) for ki, si, di in zip(k, s, d, strict=True)]
    layout, shape = ctx.layout(ctx.input), ctx.shape(ctx.input)
    grid = [(n + 2 * pi - w) // si + 1 for n, pi, (w, si) in zip(shape[-2:], p, windows, strict=True)]
    result = windowing.window(layout, (*shape[:-2], *grid), windows)
    axes = tuple(AxisEffect(m.span, Fraction(m.stride)) for m in result.mixes)
    exact = (
        result.exact and all(len(dim) == 1 for dim in result.layout[-2:]) and not layouts.axes_of(layout[-3])
    )
    cols = tuple(f for dim in result.layout[-2:] for f in dim) if exact else layouts.plain(ctx.out_shape[-1])
    out = (*layout[:-3], layouts.plain(ctx.out_shape[-2]), cols)
    return OpEffect(
        "pool", axes, out, kernel_size=k, stride=s, dilation=d, unknown=not exact,  # type: ignore[arg-type]
        assumption=None if exact else "unfold: the positions of its blocks are not followed",
    )  # fmt: skip


@register_function_rule("fold")
def _fold_function(ctx: OpContext) -> OpEffect:
    """col2im, the inverse of unfold: each output pixel sums the ceil(k/s) blocks along an axis that cover it,
    whose positions the input's last dim holds (as a transposed convolution does)."""
    k = as_tuple(ctx.arg(2, "kernel_size"), 2)
    d, s = as_tuple(ctx.arg(3, "dilation", 1), 2), as_tuple(ctx.arg(5, "stride", 1), 2)
    layout = ctx.layout(ctx.input)
    grid = [f for f in layout[-1] if f.axis is not None]
    out_shape = ctx.out_shape
    exact = len(grid) == 2 and [f.axis for f in grid] == [0, 1] and all(f.stride == 1 for f in grid)
    axes = tuple(
        AxisEffect(math.ceil((di * (ki - 1) + 1) / si), Fraction(1, si))
        for ki, si, di in zip(k, s, d, strict=True)
    )
    out = (
        layout[0],
        layouts.plain(out_shape[1]),
        (layouts.Factor(0, out_shape[2]),),
        (layouts.Factor(1, out_shape[3]),),
    )
    return OpEffect(
        "conv", axes, out, kernel_size=k, stride=s, dilation=d, unknown=not exact,
        assumption=None if exact else "fold: its input's last dim does not hold the blocks' grid; taken as if it did",
    )  # fmt: skip
