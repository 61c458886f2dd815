"""Running a traced model on the meta device: shapes without arithmetic, and without torch's slow paths.

Every tensor lives on the ``meta`` device; the model's own parameters stay where they are and are
never copied (meta tensors of their shapes stand in for them). Three things make it fast enough to call
hundreds of times a second: shape-preserving modules (norms, activations) are skipped; modules that own
nothing, convolutions and linear layers are called directly instead of through
``torch.func.functional_call``; and element-wise arithmetic (``add``, ``mul``, activations), ``torch.cat``,
linear layers and 2-D convolutions get their result from the output shape's formula, since torch's meta kernels for them
run Python reference code (about 0.5 ms an element-wise op, 0.1 ms a convolution). Where a formula's
preconditions do not hold (a shape torch would reject), torch's own kernel runs and raises its error.
Ops without a meta kernel raise, and callers fall back to a real forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import rules

#: binary arithmetic, by the name fx gives the target (``operator.add`` -> "add", ``x.add_`` -> "add_")
_BINARY = frozenset(
    {"add", "sub", "mul", "truediv", "div", "iadd", "isub", "imul", "itruediv", "add_", "sub_", "mul_", "div_",
     "rsub"}
)  # fmt: skip
_IN_PLACE = frozenset({"iadd", "isub", "imul", "itruediv", "add_", "sub_", "mul_", "div_", "relu_", "sigmoid_",
                       "hardswish_", "silu_", "hardtanh_"})  # fmt: skip
#: value-wise ops that keep shape and dtype
_UNARY = frozenset(
    {"relu", "relu_", "relu6", "sigmoid", "sigmoid_", "hardsigmoid", "hardswish", "hardswish_", "silu", "silu_",
     "gelu", "tanh", "hardtanh", "hardtanh_", "neg", "exp", "contiguous", "clone", "dropout"}
)  # fmt: skip


def _meta(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to("meta")


def _elementwise(name: str, args: tuple, kwargs: dict) -> Any:
    """The result of an element-wise op on meta tensors, from shapes alone; None where that is unsafe."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if kwargs or not tensors or any(not t.is_meta for t in tensors):
        return None
    if name in _UNARY:
        if len(tensors) != 1 or not all(isinstance(a, (torch.Tensor, int, float, bool)) for a in args):
            return None
        if name in _IN_PLACE:
            return tensors[0]
        if name == "contiguous":
            return torch.empty(tensors[0].shape, dtype=tensors[0].dtype, device="meta")
        return _like(tensors[0], tensors[0].dtype)
    if len(args) != 2 or not all(isinstance(a, (torch.Tensor, int, float)) for a in args):
        return None
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    dtype = torch.result_type(args[0], args[1])
    if name in ("truediv", "div", "itruediv", "div_") and not dtype.is_floating_point:
        return None  # true division of integers gives floats: leave it to torch
    if name in _IN_PLACE:
        first = args[0]
        return (
            first
            if isinstance(first, torch.Tensor) and first.shape == shape and first.dtype == dtype
            else None
        )
    like = next((t for t in tensors if t.shape == shape), None)
    if like is not None:
        return _like(like, dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _like(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty_like(t, dtype=dtype)`` for a meta tensor with ``t``'s strides (empty_like's meta
    kernel runs Python code; ``empty_strided``'s does not)."""
    return torch.empty_strided(t.shape, t.stride(), dtype=dtype, device="meta")


def _cat(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """``torch.cat`` of meta tensors of one dtype and rank, from their shapes; None where that is unsafe."""
    tensors = args[0] if args else kwargs.get("tensors")
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if (
        len(args) > 2
        or set(kwargs) - {"tensors", "dim"}
        or not isinstance(tensors, (list, tuple))
        or not tensors
    ):
        return None
    first = tensors[0]
    if not isinstance(dim, int) or not all(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
        return None
    rank = first.dim()
    if rank == 0 or any(t.dim() != rank or t.dtype != first.dtype for t in tensors):
        return None
    dim %= rank
    if any(
        t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :] for t in tensors
    ):
        return None  # torch raises the error
    shape = (*first.shape[:dim], sum(t.shape[dim] for t in tensors), *first.shape[dim + 1 :])
    return torch.empty(shape, dtype=first.dtype, device="meta")


def _conv2d(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor | None:
    """A Conv2d's output on a batched meta input, from the output-size formula; None where torch should
    check (other ranks, a channel mismatch, string padding, an output that would be empty)."""
    if x.dim() != 4 or x.shape[1] != module.in_channels or isinstance(module.padding, str) or not x.is_meta:
        return None
    out = []
    for size, k, s, p, d in zip(
        x.shape[2:], module.kernel_size, module.stride, module.padding, module.dilation, strict=True
    ):
        n = (size + 2 * p - d * (k - 1) - 1) // s + 1
        if n < 1 or size + 2 * p < d * (k - 1) + 1:
            return None
        out.append(n)
    return torch.empty((x.shape[0], module.out_channels, *out), dtype=x.dtype, device="meta")


def _owns_nothing(module: nn.Module) -> bool:
    return not any(m._parameters or m._buffers for m in module.modules())


class CachedInterpreter(fx.Interpreter):
    """An fx Interpreter that finds submodules in ``modules`` (``dict(gm.named_modules())``, made once per
    trace) instead of walking the module tree at every call."""

    def __init__(self, gm: fx.GraphModule, modules: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__(gm)
        self.modules = modules if modules is not None else dict(gm.named_modules())

    def fetch_attr(self, target: str) -> Any:
        module = self.modules.get(target)
        return module if module is not None else super().fetch_attr(target)


class OnMeta(CachedInterpreter):
    """An fx Interpreter that runs a GraphModule on meta tensors (see the module docstring)."""

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        name = getattr(target, "__name__", "")
        if target is torch.cat:
            result = _cat(tuple(args), dict(kwargs))
            if result is not None:
                return result
        if (name in _BINARY or name in _UNARY) and getattr(target, "__module__", "") in _FAST_MODULES:
            result = _elementwise(name, tuple(args), dict(kwargs))
            if result is not None:
                return result
        return super().call_function(target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        if target in _BINARY or target in _UNARY:
            result = _elementwise(target, tuple(args), dict(kwargs))
            if result is not None:
                return result
        return super().call_method(target, args, kwargs)

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        module = self.fetch_attr(target)
        if isinstance(module, rules.SHAPE_PRESERVING_MODULES) and len(args) == 1 and not kwargs:
            return args[0]  # the shape is known, and meta batch norm alone costs ~4 ms a call
        cls = type(module)
        if not kwargs and len(args) == 1 and isinstance(args[0], torch.Tensor):
            if cls.forward is nn.Conv2d.forward:
                result = _conv2d(module, args[0])
                if result is not None:
                    return result
            if isinstance(module, nn.modules.conv._ConvNd) and cls.forward in _CONV_FORWARDS:
                return module._conv_forward(args[0], module.weight.to("meta"), _meta(module.bias))
            if cls.forward is nn.Linear.forward:
                x = args[0]
                if x.is_meta and x.dim() >= 1 and x.shape[-1] == module.in_features:
                    return torch.empty((*x.shape[:-1], module.out_features), dtype=x.dtype, device="meta")
                return F.linear(x, module.weight.to("meta"), _meta(module.bias))
        if _owns_nothing(module):
            return module(*args, **kwargs)
        state = {name: t.to("meta") for name, t in module.named_parameters()}
        state.update((name, t.to("meta")) for name, t in module.named_buffers())
        return torch.func.functional_call(module, state, tuple(args), dict(kwargs))


_CONV_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward)
#: where the fast-pathed functions come from: ``operator``, torch and ``torch.nn.functional``
_FAST_MODULES = frozenset({"_operator", "operator", "torch", "torch.nn.functional", None})
