"""Layouts through ops that slide windows over positions or pad them (convolutions, pooling, padding),
for any layout: an image ``[N, C, H, W]``, or one whose positions were moved into other dims first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .layouts import AXES, Dim, Factor, Layout, Mixing, axes_of, common_stride, plain, size_of


def padded(layout: Layout, out_shape: Sequence[int]) -> tuple[Layout, bool]:
    """Layout after padding (or cropping) dims: every position stays where it was, so a dim of one factor
    keeps its axis and spacing at the new size. A padded dim that holds several factors cannot be followed
    (its positions now interleave with the padding): it keeps its axes as extent-1 factors, and ``False``
    is returned."""
    out, exact = [], True
    for dim, size in zip(layout, out_shape, strict=True):
        if size_of(dim) == size:
            out.append(dim)
        elif not axes_of(dim):
            out.append(plain(size))
        elif len(dim) == 1:
            out.append((replace(dim[0], extent=size),))
        else:
            exact = False
            out.append(tuple(Factor(f.axis, 1) for f in dim if f.axis is not None) + plain(size))
    return tuple(out), exact


@dataclass(frozen=True)
class Windowed:
    """What a windowed op (a convolution, a pooling layer) does to a layout: per axis a window of ``span``
    positions whose outputs are ``stride`` apart, the output layout, and whether the layout was followed
    exactly (False: a window slid over a dim that holds several factors, taken as covering them all)."""

    mixes: tuple[Mixing, Mixing]
    layout: Layout
    exact: bool


def window(
    layout: Layout,
    out_shape: Sequence[int],
    windows: Sequence[tuple[int, int]],
    *,
    channel_dim: int | None = None,
    group_size: int | None = None,
) -> Windowed:
    """The effect of an op that slides windows ``(effective kernel, stride)`` over the last dims and, when
    ``channel_dim`` is given, combines each output channel from ``group_size`` consecutive input channels
    (a convolution: all of them unless grouped; depthwise: one).

    On an image ``[N, C, H, W]`` this is the recurrence of paper 000 eq. (1): a window of k positions with
    stride s. Where positions were moved into other dims first (a space-to-depth stem: ``view`` / ``permute``
    / ``view`` puts 4x4 pixel blocks into the channels), a window over a dim whose positions lie ``t``
    apart spans ``(k - 1) * t + 1`` of them, mixing channels that carry positions spans those too (a 3x3
    conv after a 4x4 space-to-depth sees 4 + 2 * 4 = 12 pixels), and the outputs are as far apart as the
    finest positions left (``mix``'s renormalisation).
    """
    rank, n = len(layout), len(windows)
    offsets = {axis: 0 for axis in AXES}  # the farthest offset a window reaches, per axis
    out = list(layout)
    exact = True
    for i, (kernel, stride) in enumerate(windows):
        d = rank - n + i
        dim = layout[d]
        if not axes_of(dim):
            out[d] = plain(out_shape[d])
        elif kernel == 1 and stride == 1 and size_of(dim) == out_shape[d]:
            continue  # a 1x1 window moves nothing, whatever the dim holds
        elif len(dim) == 1:
            factor = dim[0]
            offsets[factor.axis] += (kernel - 1) * factor.stride
            out[d] = (Factor(factor.axis, out_shape[d], factor.stride * stride),)
        elif kernel == stride and dim[-1].extent % stride == 0 and size_of(dim) // stride == out_shape[d]:
            # non-overlapping windows over a merged dim (a pool over flattened tokens) cut its inner factor
            inner = dim[-1]
            if inner.axis is not None:
                offsets[inner.axis] += (kernel - 1) * inner.stride
            out[d] = (*dim[:-1], Factor(inner.axis, inner.extent // stride, inner.stride * stride))
        else:  # positions of several factors in one dim: a window over it reaches into all of them
            exact = False
            for factor in dim:
                if factor.axis is not None:
                    offsets[factor.axis] += (factor.extent - 1) * factor.stride
            out[d] = tuple(Factor(f.axis, 1) for f in dim if f.axis is not None) + plain(out_shape[d])
    if channel_dim is not None:
        mixed, kept, split_exactly = _group_factors(layout[channel_dim], group_size)
        exact = exact and split_exactly
        for factor in mixed:
            if factor.axis is not None:
                offsets[factor.axis] += (factor.extent - 1) * factor.stride
        rest = out_shape[channel_dim] // max(size_of(kept), 1)
        out[channel_dim] = (
            kept + plain(rest)
            if rest * size_of(kept) == out_shape[channel_dim]
            else plain(out_shape[channel_dim])
        )
    mixes = []
    for axis in AXES:
        stride, out = common_stride(out, axis)
        mixes.append(Mixing(span=offsets[axis] + 1, stride=stride))
    return Windowed((mixes[0], mixes[1]), tuple(out), exact)


def _group_factors(dim: Dim, group_size: int | None) -> tuple[Dim, Dim, bool]:
    """Split a channel dim into the inner factors one group of ``group_size`` channels spans (mixed) and the
    outer ones that tell the groups apart (kept); None mixes the whole dim. Returns (mixed, kept, exact)."""
    if group_size is None or group_size >= size_of(dim):
        return dim, (), True
    mixed: list[Factor] = []
    kept = list(dim)
    product = 1
    while kept and product < group_size:
        factor = kept.pop()
        if product * factor.extent <= group_size:
            mixed.insert(0, factor)
            product *= factor.extent
            continue
        need = group_size // product
        if group_size % product or factor.extent % need:
            return dim, (), False  # groups that cut across factors: taken as mixing everything
        mixed.insert(0, replace(factor, extent=need))
        kept.append(replace(factor, extent=factor.extent // need, stride=factor.stride * need))
        product *= need
    return tuple(mixed), tuple(kept), True
