"""Teaching the analysis a layer of your own: its receptive-field rule, how it acts on channels, and its FLOP
formula, registered together (``register_layer``), so that it is analyzed and counted like torch's layers.

Example:
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> class Blur(nn.Module):  # a 5x5 box blur, stride 2, per channel
    ...     def forward(self, x):
    ...         return F.avg_pool2d(x, 5, stride=2, padding=2)
    >>> register_layer(Blur, rule=sliding_window_rule(5, 2, category="pool"), channels="keep",
    ...                flops=lambda module, args, kwargs, out: out.numel() * 25)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .flop_formulas import has_flop_formula, register_flop_formula
from .rules import (
    Category,
    ChannelAction,
    OpContext,
    OpEffect,
    Rule,
    register_function_rule,
    register_module_rule,
)
from .rules import windowed as _windowed

#: a layer's FLOP formula: ``flops(module, args, kwargs, output)`` for a module class (``module`` is the
#: called instance), ``flops(args, kwargs, output)`` for a function; tensors have their shapes (on the meta
#: device, no values); it returns the count in fvcore's convention (one multiply-add is one flop)
FlopFormula = Callable[..., int]


def register_layer(
    layer: type[nn.Module] | Callable[..., Any],
    *,
    rule: Rule,
    channels: ChannelAction | None = None,
    flops: FlopFormula | None = None,
    replace: bool = False,
) -> None:
    """Register a custom layer (a module class, or a function wrapped with ``torch.fx.wrap``): the rule
    that says what it does to positions, how it acts on channels (``"keep"``, ``"mix"``, ``"join"``,
    ``"reshape"``) and its FLOP formula. A module class is traced as one node (a leaf); a function is known by
    the callable itself, never by its name. Its FLOPs are listed under its name in ``flops_by_operator``.

    Raises:
        ValueError: the layer has a rule or a FLOP formula already and ``replace`` is False.
        TypeError: ``rule`` is not a function of an ``OpContext``, or ``channels`` is not an action.
    """
    is_module = isinstance(layer, type) and issubclass(layer, nn.Module)
    register = register_module_rule if is_module else register_function_rule
    name = layer.__name__ if hasattr(layer, "__name__") else repr(layer)
    handler = None
    if flops is not None:
        if is_module:

            def handler(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
                return name, int(flops(module, args, kwargs, out))

        else:

            def handler(func: Any, op: str, args: tuple, kwargs: dict, out: Any) -> tuple[str, int]:
                return name, int(flops(args, kwargs, out))

        if (
            has_flop_formula(layer) and not replace
        ):  # checked first: a refusal leaves both tables as they were
            raise ValueError(f"{name} has a FLOP formula already; pass replace=True to replace it")
    register(layer, channels=channels, replace=replace)(rule)
    if handler is not None:
        register_flop_formula(layer, handler, replace=True)


def sliding_window_rule(kernel: int, stride: int = 1, *, category: Category = "conv") -> Rule:
    """The rule of a layer that slides a ``kernel`` x ``kernel`` window with ``stride`` over the last two
    dims of its input, as a convolution or pooling does (``category``: ``"conv"`` mixes channels,
    ``"pool"`` keeps them). Padding changes no receptive field and needs no saying."""

    def rule(ctx: OpContext) -> OpEffect:
        group_size = None if category == "conv" else False
        axes, layout, assumption = _windowed(ctx, [(kernel, stride)] * 2, group_size=group_size)
        return OpEffect(
            category, axes=axes, layout=layout, kernel_size=(kernel, kernel), stride=(stride, stride),
            assumption=assumption,
        )  # fmt: skip

    return rule
