"""Ops that move data between dimensions without mixing it: reshapes, permutes, slicing, concatenation."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .. import layouts
from ..layouts import Factor, Layout
from ._base import (
    IDENTITY,
    AxisEffect,
    Category,
    OpContext,
    OpEffect,
    Several,
    is_layout,
    register_function_rule,
    register_module_rule,
    reshaped,
    target_name,
)
from ._fallback import unknown_function


def _moved(layout: Layout) -> OpEffect:
    return OpEffect("layout", layout=layout)


@register_module_rule(nn.Flatten, channels="reshape")
def _flatten_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return _moved(layouts.flatten(ctx.layout(ctx.input), m.start_dim, m.end_dim))


@register_module_rule(nn.Unflatten, channels="reshape")
def _unflatten_module(ctx: OpContext) -> OpEffect:
    return reshaped(ctx)


@register_function_rule("cat", "concat", "concatenate", channels="join")
def _cat(ctx: OpContext) -> OpEffect:
    """Concatenation: the dims other than the joined one take the inputs' factors; the joined dim keeps the
    factors of its largest input (positions joined with class tokens stay positions)."""
    tensors = ctx.arg(0, "tensors")
    parts = ctx.layouts_and_shapes(tensors if isinstance(tensors, (list, tuple)) else [tensors])
    shape = ctx.out_shape
    dim = ctx.arg(1, "dim", 0) % len(shape)
    out = []
    for d in range(len(shape)):
        if d != dim:
            out.append(layouts.broadcast([(layout, s) for layout, s in parts], shape)[d])
            continue
        widest = max(parts, key=lambda part: part[1][d])[0][d]
        out.append(widest if layouts.axes_of(widest) else layouts.plain(shape[d]))
    return _moved(tuple(out))


@register_function_rule("stack")
def _stack(ctx: OpContext) -> OpEffect:
    tensors = ctx.arg(0, "tensors")
    shape = ctx.out_shape
    dim = ctx.arg(1, "dim", 0) % len(shape)
    parts = ctx.layouts_and_shapes(tensors if isinstance(tensors, (list, tuple)) else [tensors])
    inserted = [(layouts.unsqueeze(layout, dim), (*s[:dim], 1, *s[dim:])) for layout, s in parts]
    out = list(layouts.broadcast(inserted, shape))
    out[dim] = layouts.plain(shape[dim])
    return _moved(tuple(out))


@register_function_rule("view", "reshape", "view_as", "reshape_as", "unflatten", channels="reshape")
def _reshape(ctx: OpContext) -> OpEffect:
    return reshaped(ctx)


@register_function_rule("flatten", channels="reshape")
def _flatten(ctx: OpContext) -> OpEffect:
    start, end = ctx.arg(1, "start_dim", 0), ctx.arg(2, "end_dim", -1)
    return _moved(layouts.flatten(ctx.layout(ctx.input), start, end))


@register_function_rule("permute")
def _permute(ctx: OpContext) -> OpEffect:
    dims = ctx.node.args[1:] if len(ctx.node.args) > 1 else ctx.node.kwargs["dims"]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    return _moved(layouts.permute(ctx.layout(ctx.input), dims))


@register_function_rule("transpose", "swapaxes", "swapdims")
def _transpose(ctx: OpContext) -> OpEffect:
    return _moved(layouts.transpose(ctx.layout(ctx.input), ctx.arg(1, "dim0"), ctx.arg(2, "dim1")))


@register_function_rule("t")
def _t(ctx: OpContext) -> OpEffect:
    return _moved(ctx.layout(ctx.input)[::-1])


@register_function_rule("movedim", "moveaxis")
def _movedim(ctx: OpContext) -> OpEffect:
    src, dst = ctx.arg(1, "source"), ctx.arg(2, "destination")
    src, dst = (src,) if isinstance(src, int) else src, (dst,) if isinstance(dst, int) else dst
    return _moved(layouts.movedim(ctx.layout(ctx.input), src, dst))


@register_function_rule("squeeze", "unsqueeze", "expand", "expand_as", "repeat")
def _resize_dims(ctx: OpContext) -> OpEffect:
    """Adding or removing size-1 dims (or broadcasting them) moves no position: a reshape by shape."""
    x = ctx.input
    in_shape, out_shape = ctx.shape(x), ctx.out_shape
    if len(in_shape) == len(out_shape):
        return _moved(layouts.broadcast([(ctx.layout(x), in_shape)], out_shape))
    if target_name(ctx.node) == "unsqueeze":
        return _moved(layouts.unsqueeze(ctx.layout(x), ctx.arg(1, "dim")))
    return reshaped(ctx)


@register_function_rule("chunk", "split", "tensor_split", "split_with_sizes")
def _split(ctx: OpContext) -> OpEffect:
    x = ctx.input
    layout = ctx.layout(x)
    metas = ctx.outputs()
    return OpEffect("layout", layout=Several(_resize_split(layout, ctx.shape(x), m.shape) for m in metas))


def _resize_split(layout: Layout, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Layout:
    """A piece of a split keeps every dim but the split one, which keeps its factors only if whole."""
    return tuple(
        dim if a == b else layouts.plain(b) for dim, a, b in zip(layout, in_shape, out_shape, strict=True)
    )


@register_function_rule("unbind")
def _unbind(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    dim = ctx.arg(1, "dim", 0) % len(layout)
    metas = ctx.outputs()
    return OpEffect("layout", layout=Several([layouts.drop(layout, [dim])] * len(metas)))


@register_function_rule("getitem")
def _getitem(ctx: OpContext) -> OpEffect:
    container, index = ctx.node.args
    value = ctx.layout(container)
    if isinstance(value, Several):
        picked = value[index]  # one tensor, or a slice of the tuple (torch.split(x, 8, 1)[1:])
        return _moved(Several(picked) if isinstance(index, slice) else picked)
    if not is_layout(value):
        return unknown_function(ctx)
    return _index_tensor(ctx, value, ctx.arg(1))


def _index_tensor(ctx: OpContext, layout: Layout, index: Any) -> OpEffect:
    """Basic indexing: ints drop dims, None inserts them, slices crop, strided slices subsample."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
        return unknown_function(ctx, reason="advanced (tensor) indexing")
    in_shape = ctx.shape(ctx.node.args[0])
    explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
    out: list[layouts.Dim] = []
    effects = [IDENTITY, IDENTITY]
    d = 0
    for item in items:
        if item is Ellipsis:
            for _ in range(len(layout) - explicit):
                out.append(layout[d])
                d += 1
        elif item is None:
            out.append(())
        elif isinstance(item, int):
            d += 1
        elif isinstance(item, slice):
            start, stop, step = item.indices(in_shape[d])
            size = len(range(start, stop, step))
            dim = layout[d]
            if size == in_shape[d]:
                out.append(dim)
            elif len(dim) == 1 and dim[0].axis is not None:
                out.append((Factor(dim[0].axis, size),))
                if step != 1:
                    effects[dim[0].axis] = AxisEffect(1, Fraction(step * dim[0].stride))
            else:
                out.append(layouts.plain(size) if not layouts.axes_of(dim) else dim)
            d += 1
    out.extend(layout[d:])
    category: Category = "slice" if any(not e.is_identity for e in effects) else "layout"
    return OpEffect(category, (effects[0], effects[1]), tuple(out))


@register_function_rule("select")
def _select(ctx: OpContext) -> OpEffect:
    x = ctx.input
    dim = ctx.arg(1, "dim") % len(ctx.shape(x))
    return _moved(layouts.drop(ctx.layout(x), [dim]))


@register_function_rule("narrow")
def _narrow(ctx: OpContext) -> OpEffect:
    """``x.narrow(dim, start, length)`` is ``x[..., start:start + length]`` along ``dim``: a crop, which keeps
    the positions of a spatial dim (as a slice does) and makes any other dim a plain one."""
    x = ctx.input
    in_shape = ctx.shape(x)
    dim, start, length = ctx.arg(1, "dim") % len(in_shape), ctx.arg(2, "start"), ctx.arg(3, "length")
    if not isinstance(start, int) or not isinstance(length, int):  # a tensor start: where is not known
        return _moved(_resize_split(ctx.layout(x), in_shape, ctx.out_shape))
    start %= in_shape[dim]
    return _index_tensor(ctx, ctx.layout(x), (*[slice(None)] * dim, slice(start, start + length)))
