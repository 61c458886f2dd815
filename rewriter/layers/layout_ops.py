"""Ops that move data between dimensions without mixing it: reshapes, permutes, slicing, concatenation."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .. import layouts
from ..layouts import NONE, Layout
from ._base import (
    IDENTITY,
    AxisEffect,
    Category,
    OpContext,
    OpEffect,
    elementwise,
    is_layout,
    register_function_rule,
    register_module_rule,
    reshaped,
    unknown_function,
)


@register_module_rule(nn.Flatten)
def _flatten_module(ctx: OpContext) -> OpEffect:
    m = ctx.module
    return OpEffect("layout", layout=layouts.flatten(ctx.layout(ctx.input), m.start_dim, m.end_dim))


@register_module_rule(nn.Unflatten)
def _unflatten_module(ctx: OpContext) -> OpEffect:
    return OpEffect("layout", layout=reshaped(ctx))


@register_function_rule("cat", "concat", "concatenate")
def _cat(ctx: OpContext) -> OpEffect:
    return elementwise(ctx, "layout")


@register_function_rule("stack")
def _stack(ctx: OpContext) -> OpEffect:
    dim = ctx.arg(1, "dim", 0)
    rank = len(ctx.out_shape)
    inserted = [layouts.unsqueeze(ctx.layout(n), dim % rank) for n in ctx.tensor_inputs]
    return OpEffect("layout", layout=layouts.broadcast(inserted, rank))


@register_function_rule("view", "reshape", "view_as", "reshape_as", "unflatten")
def _reshape(ctx: OpContext) -> OpEffect:
    return OpEffect("layout", layout=reshaped(ctx))


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
    if isinstance(value, tuple) and not is_layout(value):
        return OpEffect("layout", layout=value[index])  # an element of a tuple (chunk, split, attention)
    return _index_tensor(ctx, value, index)


def _index_tensor(ctx: OpContext, layout: Layout, index: Any) -> OpEffect:
    """Basic indexing: ints drop dims, None inserts them, strided slices subsample (stride, kernel 1)."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in items):
        return unknown_function(ctx)
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
        "layout", layout=reshaped(ctx) if len(ctx.out_shape) != len(ctx.shape(x)) else ctx.layout(x)
    )
