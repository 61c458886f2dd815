"""Ops that mix positions or channels: linear layers, attention, matmul and einsum, softmax, reductions."""

from __future__ import annotations

from torch import nn

from .. import layouts
from ..layouts import NONE
from ._base import (
    OpContext,
    OpEffect,
    elementwise,
    register_function_rule,
    register_module_rule,
    target_name,
    unbounded_on,
    unknown_function,
)


@register_module_rule(nn.Linear, nn.Bilinear, nn.LazyLinear)
def _linear_module(ctx: OpContext) -> OpEffect:
    return _linear(ctx)


def _linear(ctx: OpContext) -> OpEffect:
    """A Linear mixes its last dim: a 1x1 op per position, unless that dim carries flattened positions."""
    layout = ctx.layout(ctx.input)
    return OpEffect("linear", unbounded_on(layout[-1]), (*layout[:-1], NONE))


@register_module_rule(nn.MultiheadAttention)
def _mha_module(ctx: OpContext) -> OpEffect:
    query = ctx.arg(0, "query")
    key = ctx.arg(1, "key", query)
    key_layout = ctx.layout(key) or ctx.layout(query)
    seq_dim = 1 if len(key_layout) == 3 and ctx.module.batch_first else 0
    q_layout = ctx.layout(query) or key_layout
    return OpEffect("attention", unbounded_on(key_layout[seq_dim]), ((*q_layout[:-1], NONE), None))


@register_module_rule(
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.Transformer
)
def _transformer_module(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    return OpEffect("attention", unbounded_on(layouts.spatial_axes(layout)), layout)


@register_module_rule(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def _softmax_module(ctx: OpContext) -> OpEffect:
    return _softmax_over(ctx, ctx.module.dim)


def _softmax_over(ctx: OpContext, dim: int | None) -> OpEffect:
    layout = ctx.layout(ctx.input)
    mixed = layouts.spatial_axes(layout, layouts.normalize_dims(dim, len(layout)))
    return OpEffect("reduction", unbounded_on(mixed), layout)


_REDUCTIONS = ("mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod", "nansum",
               "nanmean", "median", "argmax", "argmin", "any", "all", "std_mean", "var_mean")  # fmt: skip


@register_function_rule(*_REDUCTIONS)
def _reduction(ctx: OpContext) -> OpEffect:
    """Reducing dims that carry positions mixes all of them (``x.mean((2, 3))`` is global pooling)."""
    name = target_name(ctx.node)
    if name in ("max", "min") and len(ctx.tensor_inputs) > 1:
        return elementwise(ctx)  # torch.max(a, b) is element-wise
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
    return OpEffect("reduction" if mixed else "elementwise", unbounded_on(mixed), out_layout)


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
    return OpEffect("attention" if mixed else "linear", unbounded_on(frozenset(mixed)), out_layout)


@register_function_rule("einsum")
def _einsum(ctx: OpContext) -> OpEffect:
    equation = ctx.node.args[0].replace(" ", "")
    operands = ctx.node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    if "..." in equation or not rhs:
        return unknown_function(ctx)
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
    return OpEffect("attention" if mixed else "linear", unbounded_on(frozenset(mixed)), out_layout)


@register_function_rule("scaled_dot_product_attention")
def _sdpa(ctx: OpContext) -> OpEffect:
    query, key = ctx.arg(0, "query"), ctx.arg(1, "key")
    k_layout = ctx.layout(key) or ctx.layout(query)
    q_layout = ctx.layout(query) or k_layout
    return OpEffect("attention", unbounded_on(k_layout[-2]), q_layout)


@register_function_rule("linear")
def _linear_function(ctx: OpContext) -> OpEffect:
    return _linear(ctx)
