"""Ops that combine values along whole dims: linear layers, attention, matmul and einsum, softmax, reductions.

Whether such an op is a 1x1 op, a local window or a global op depends only on which factors of the image's
positions the combined dims carry (``rewriter.analysis.layouts.mix``): a Linear over channels is 1x1, over a patch's
pixels a patch-sized kernel, over flattened positions global.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .. import layouts
from ..layouts import Layout
from ._base import (
    IDENTITY,
    UNBOUNDED,
    Axes,
    AxisEffect,
    OpContext,
    OpEffect,
    RuleRefusal,
    Several,
    elementwise,
    mixing,
    register_function_rule,
    register_module_rule,
    target_name,
)
from ._fallback import unknown_function


def _combine(parts: Sequence[tuple[Layout, Sequence[int]]], out_layout: Layout) -> tuple[Axes, Layout]:
    """Mix several operands (a contraction reads dims of each): the widest effect per axis wins."""
    axes = [IDENTITY, IDENTITY]
    for layout, dims in parts:
        effects, out_layout = mixing(layout, dims, out_layout)
        for a, effect in enumerate(effects):
            current = axes[a]
            if effect.unbounded or current.unbounded:
                axes[a] = UNBOUNDED
            elif effect.kernel > current.kernel or effect.stride > current.stride:
                axes[a] = AxisEffect(max(effect.kernel, current.kernel), max(effect.stride, current.stride))
    return (axes[0], axes[1]), out_layout


def _category(axes: Axes, mixing_category: str, otherwise: str) -> str:
    return mixing_category if any(not a.is_identity for a in axes) else otherwise


@register_module_rule(nn.Linear, nn.LazyLinear, channels="mix")
@register_module_rule(nn.Bilinear)
def _linear_module(ctx: OpContext) -> OpEffect:
    return _linear(ctx)


def _linear(ctx: OpContext) -> OpEffect:
    """A Linear combines its last dim: 1x1 per position, a kernel over patch pixels, global over positions."""
    layout = ctx.layout(ctx.input)
    out = (*layout[:-1], layouts.plain(ctx.out_shape[-1]))
    axes, out = mixing(layout, [-1], out)
    return OpEffect("linear", axes, out)


@register_module_rule(nn.MultiheadAttention)
def _mha_module(ctx: OpContext) -> OpEffect:
    query = ctx.arg(0, "query")
    key = ctx.arg(1, "key", query)
    key_layout = ctx.layout(key) or ctx.layout(query)
    q_layout = ctx.layout(query) or key_layout
    seq_dim = 1 if len(key_layout) == 3 and ctx.module.batch_first else 0
    out = (*q_layout[:-1], layouts.plain(ctx.module.embed_dim))
    axes, out = mixing(key_layout, [seq_dim], out)
    return OpEffect("attention", axes, Several((out, None)))


@register_module_rule(
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder, nn.Transformer
)
def _transformer_module(ctx: OpContext) -> OpEffect:
    layout = ctx.layout(ctx.input)
    axes, out = mixing(layout, [d for d in range(len(layout)) if layouts.axes_of(layout[d])], layout)
    return OpEffect("attention", axes, out)


@register_module_rule(nn.LSTM, nn.GRU, nn.RNN)
def _recurrent_module(ctx: OpContext) -> OpEffect:
    """A recurrent layer combines the whole sequence (and the features) of its input into each output: the
    positions the sequence dim carries are all mixed (a row LSTM over ``[N*H, W, C]`` is global along the
    width). It returns ``(output, h)`` (``(output, (h, c))`` for an LSTM); each gets its layout."""
    layout, metas = ctx.layout(ctx.input), ctx.outputs()
    if len(layout) != 3 or not isinstance(metas, (list, tuple)):
        raise RuleRefusal(f"expects a batched sequence [N, L, C] or [L, N, C], got {len(layout)} dims")
    seq, batch = (1, 0) if ctx.module.batch_first else (0, 1)
    output, state = metas
    out = tuple(
        layouts.plain(s) if d == 2 else dim
        for d, (dim, s) in enumerate(zip(layout, output.shape, strict=True))
    )
    axes, out = mixing(layout, [seq, 2], out)
    states = state if isinstance(state, (list, tuple)) else (state,)
    state_layouts = [(layouts.plain(m.shape[0]), layout[batch], layouts.plain(m.shape[-1])) for m in states]
    state_layout = Several(state_layouts) if isinstance(state, (list, tuple)) else state_layouts[0]
    return OpEffect("recurrent", axes, Several((out, state_layout)))


# Softmax normalises along a dim, like a layer norm, and is treated the same way: element-wise. In attention
# the positions are combined by the product with the values that follows; counting the softmax as well would
# count a window of non-overlapping partitions twice (softmax(q k^T) v mixes one window, not two).
@register_module_rule(nn.Softmax, nn.LogSoftmax, nn.Softmin, channels="keep")
def _softmax_module(ctx: OpContext) -> OpEffect:
    return elementwise(ctx)


_REDUCTIONS = ("mean", "sum", "amax", "amin", "max", "min", "std", "var", "norm", "logsumexp", "prod", "nansum",
               "nanmean", "median", "argmax", "argmin", "any", "all", "std_mean", "var_mean")  # fmt: skip


@register_function_rule(*_REDUCTIONS, channels="keep")
def _reduction(ctx: OpContext) -> OpEffect:
    """Reducing dims that carry positions combines them (``x.mean((2, 3))`` is global pooling)."""
    name = target_name(ctx.node)
    if name in ("max", "min") and len(ctx.tensor_inputs) > 1:
        return elementwise(ctx)  # torch.max(a, b) is element-wise
    x = ctx.input
    layout, in_shape = ctx.layout(x), ctx.shape(x)
    dims = ctx.arg(2 if name == "norm" else 1, "dim")
    if name in ("amax", "amin") and dims in ((), []):
        dims = None
    reduced = layouts.normalize_dims(dims if not isinstance(dims, (float, str)) else None, len(in_shape))
    meta = ctx.outputs()
    first = meta[0] if isinstance(meta, (list, tuple)) else meta
    keepdim = first is not None and len(first.shape) == len(in_shape) and len(reduced) > 0
    out = (
        tuple(() if d in reduced else dim for d, dim in enumerate(layout))
        if keepdim
        else layouts.drop(layout, reduced)
    )
    axes, out = mixing(layout, reduced, out)
    if isinstance(meta, (list, tuple)):
        return OpEffect("reduction", axes, Several((out,) * len(meta)))
    return OpEffect(_category(axes, "reduction", "elementwise"), axes, out)


@register_function_rule("softmax", "log_softmax", "softmin", "_softmax", channels="keep")
def _softmax(ctx: OpContext) -> OpEffect:
    return elementwise(ctx)


@register_function_rule("matmul", "bmm", "mm", "baddbmm")
def _matmul(ctx: OpContext) -> OpEffect:
    """``a @ b`` contracts a's last dim with b's second-to-last; the result keeps a's rows and b's columns."""
    name = target_name(ctx.node)
    a, b = (ctx.arg(1), ctx.arg(2)) if name == "baddbmm" else (ctx.arg(0), ctx.arg(1))
    la, lb = ctx.layout(a), ctx.layout(b)
    shape = ctx.out_shape
    parts = []
    if la and lb and len(la) >= 2 and len(lb) >= 2:
        lead = la[:-2] if len(la) >= len(lb) else lb[:-2]
        out = (*lead, la[-2], lb[-1])
        parts = [(la, [-1]), (lb, [-2])]
    elif la:
        out = (*la[:-1], layouts.plain(shape[-1]))
        parts = [(la, [-1])]
    elif lb and len(lb) >= 2:
        out = (*lb[:-2], layouts.plain(shape[-2]), lb[-1])
        parts = [(lb, [-2])]
    else:
        return unknown_function(ctx)
    axes, out = _combine(parts, out)
    return OpEffect(_category(axes, "attention", "linear"), axes, out)


@register_function_rule("einsum")
def _einsum(ctx: OpContext) -> OpEffect:
    equation = ctx.node.args[0].replace(" ", "")
    operands = ctx.node.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    lhs, _, rhs = equation.partition("->")
    if "..." in equation or not rhs:
        return unknown_function(ctx, reason="implicit or '...' einsum equations are not read")
    dim_of: dict[str, layouts.Dim] = {}
    parts = []
    for term, operand in zip(lhs.split(","), operands, strict=True):
        layout = ctx.layout(operand)
        if not layout:
            continue
        for letter, dim in zip(term, layout, strict=True):
            dim_of.setdefault(letter, dim)
        parts.append((layout, [i for i, letter in enumerate(term) if letter not in rhs]))
    shape = ctx.out_shape
    out = tuple(dim_of.get(letter, layouts.plain(shape[i])) for i, letter in enumerate(rhs))
    axes, out = _combine(parts, out)
    return OpEffect(_category(axes, "attention", "linear"), axes, out)


@register_function_rule("scaled_dot_product_attention")
def _sdpa(ctx: OpContext) -> OpEffect:
    query, key = ctx.arg(0, "query"), ctx.arg(1, "key")
    k_layout = ctx.layout(key) or ctx.layout(query)
    q_layout = ctx.layout(query) or k_layout
    axes, out = mixing(k_layout, [-2], q_layout)
    return OpEffect("attention", axes, out)


@register_function_rule("linear", channels="mix")
def _linear_function(ctx: OpContext) -> OpEffect:
    return _linear(ctx)
