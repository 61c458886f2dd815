"""Rules for the timm modules that torch.fx cannot trace through (timm registers them as leaves: their
``forward`` branches on the input's shape), so that the models using them are analyzed exactly, not with
the opaque-module assumption.

Each rule reads the module's configuration (kernel, window) and its input's positions. Where a block has
several paths (a shortcut beside its attention), the other paths are ``OpEffect.paths``: r_min follows
the shortest, r_max the longest.
"""

from __future__ import annotations

from fractions import Fraction

from .. import layouts
from ..layouts import AXES, Layout
from ._base import (
    UNBOUNDED,
    Axes,
    AxisEffect,
    OpContext,
    OpEffect,
    Several,
    register_function_rule,
    register_module_rule,
)


def _windows(layout: Layout, window: int, *, after: int = 1) -> Axes:
    """Attention in non-overlapping windows of ``window`` positions (a kernel of the window size, the
    convention of the Swin rule), then a ``after`` x ``after`` conv; global where one window covers an axis."""
    counts = layouts.positions(layout)
    effects = []
    for axis in AXES:
        n = counts.get(axis, 1)
        effects.append(UNBOUNDED if n <= window else AxisEffect(window + after - 1, Fraction(1)))
    return effects[0], effects[1]


def _local(kernel: int) -> Axes:
    return AxisEffect(kernel, Fraction(1)), AxisEffect(kernel, Fraction(1))


@register_module_rule("timm.models.vgg.ConvMlp")
def _conv_mlp(ctx: OpContext) -> OpEffect:
    """VGG's head: a k x k conv without padding (then a 1x1); a map smaller than k is first pooled to k x k
    by adaptive averaging, so the conv then covers all of it."""
    layout = ctx.layout(ctx.input)
    k = ctx.module.input_kernel_size
    counts = layouts.positions(layout)
    axes = tuple(UNBOUNDED if counts.get(a, 1) < k else AxisEffect(k, Fraction(1)) for a in AXES)
    out = layouts.resized(layout, ctx.out_shape)
    return OpEffect("conv", axes, out, kernel_size=(k, k), stride=(1, 1), dilation=(1, 1))  # type: ignore[arg-type]


@register_module_rule("timm.models.efficientvit_mit.LiteMLA", "timm.models.convit.GPSA")
def _global_attention(ctx: OpContext) -> OpEffect:
    """EfficientViT's linear attention and ConViT's gated positional attention mix every position."""
    layout = ctx.layout(ctx.input)
    return OpEffect("attention", (UNBOUNDED, UNBOUNDED), layout)


@register_module_rule(
    "timm.models.twins.LocallyGroupedAttn", "timm.models.efficientvit_msra.LocalWindowAttention"
)
def _window_attention(ctx: OpContext) -> OpEffect:
    """Attention inside windows (Twins' ws, EfficientViT-MSRA's window resolution)."""
    module = ctx.module
    window = getattr(module, "ws", None) or module.attn.resolution
    layout = ctx.layout(ctx.input)
    return OpEffect(
        "window_attention", _windows(layout, window), layout, kernel_size=(window, window), stride=(1, 1),
        assumption="windowed attention: treated as a kernel of the window size",
    )  # fmt: skip


@register_module_rule("timm.models.tiny_vit.TinyVitBlock")
def _tiny_vit_block(ctx: OpContext) -> OpEffect:
    """TinyViT's block: x + attention in windows, then a depthwise k x k conv, then x + MLP. Paths: the
    attention's, and the shortcut's through the conv alone."""
    module = ctx.module
    layout = ctx.layout(ctx.input)
    k = module.local_conv.conv.kernel_size[0]
    return OpEffect(
        "window_attention", _windows(layout, module.window_size, after=k), layout,
        kernel_size=(module.window_size, module.window_size), stride=(1, 1), paths=(_local(k),),
        assumption="windowed attention: treated as a kernel of the window size",
    )  # fmt: skip


@register_module_rule("timm.models.mobilevit.MobileVitBlock")
def _mobile_vit_block(ctx: OpContext) -> OpEffect:
    """MobileViT's block: a k x k conv, a transformer over all patches (global), and a k x k fusion conv on
    the concatenation with the block's input. Paths: the transformer's (global) and the input's through
    the fusion conv."""
    module = ctx.module
    layout = ctx.layout(ctx.input)
    fusion = module.conv_fusion
    paths = (_local(fusion.conv.kernel_size[0]),) if fusion is not None else ()
    return OpEffect("attention", (UNBOUNDED, UNBOUNDED), layout, paths=paths)


# MViTv2's functions timm keeps whole in a trace (register_notrace_function): moving the tokens of each head
# to a map for pooling and back; adding the relative-position bias to the attention logits.


@register_function_rule("reshape_pre_pool")
def _mvit_pre_pool(ctx: OpContext) -> OpEffect:
    """``[B, heads, (1 +) H*W, C]`` -> (``[B*heads, C, H, W]``, the class token or None)."""
    x = ctx.input
    layout, shape = ctx.layout(x), ctx.shape(x)
    h, w = ctx.arg(1, "feat_size")
    tokens = shape[2] - (1 if ctx.arg(2, "has_cls_token", True) else 0)
    sliced = (
        *layout[:2],
        layout[2] if layouts.size_of(layout[2]) == tokens else layouts.plain(tokens),
        layout[3],
    )
    grid, exact = layouts.reshape(
        sliced, (*shape[:2], tokens, shape[3]), (shape[0] * shape[1], h, w, shape[3])
    )
    out = layouts.permute(grid, (0, 3, 1, 2))
    cls = (*layout[:2], (), layout[3]) if tokens != shape[2] else None
    return OpEffect(
        "layout", layout=Several((out, cls)), unknown=not exact,
        assumption=None if exact else "reshape_pre_pool: the tokens are not followed exactly",
    )  # fmt: skip


@register_function_rule("reshape_post_pool")
def _mvit_post_pool(ctx: OpContext) -> OpEffect:
    """``[B*heads, C, H, W]`` -> ``[B, heads, (1 +) H*W, C]`` (the class token put back in front)."""
    x = ctx.input
    layout, shape = ctx.layout(x), ctx.shape(x)
    heads = ctx.arg(1, "num_heads")
    merged, exact = layouts.reshape(layout, shape, (shape[0] // heads, heads, shape[1], shape[2] * shape[3]))
    out = layouts.transpose(merged, 2, 3)
    return OpEffect(
        "layout", layout=Several((out, None)), unknown=not exact,
        assumption=None if exact else "reshape_post_pool: the tokens are not followed exactly",
    )  # fmt: skip


@register_function_rule("cal_rel_pos_type")
def _mvit_rel_pos(ctx: OpContext) -> OpEffect:
    """Adds to each query's logits a bias read from that query: element-wise on the logits."""
    return OpEffect("elementwise", layout=ctx.layout(ctx.node.args[0]))
