"""fvcore's FLOP formulas (``fvcore/nn/jit_handles.py``), applied to tensors instead of jit values.

One handler per op fvcore has a formula for, looked up by the op's key (``op_keys.op_key``: torch's ops by
name, any other function by itself; ``function_handler``) or by module class (``module_handler``); each
returns ``(operator, flops)`` as fvcore's ``by_operator()`` names it, a list of them, or None for an op the
convention counts as zero. ``flops.FlopCounter`` applies them; ``register_flop_formula`` adds one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .op_keys import OpKey, describe, op_key

Count = tuple[str, int]  # (operator name as fvcore's by_operator() names it, flops)


def _numel(t: Any) -> int:
    return math.prod(t.shape)


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if index < len(args):
        return args[index]
    return kwargs.get(name, default)


# --------------------------------------------------------------------------------------------------
# fvcore's formulas (fvcore/nn/jit_handles.py), on tensors instead of jit values


def conv_flops(x: torch.Tensor, weight_shape: tuple[int, ...], out: torch.Tensor, transposed: bool) -> int:
    """Batch x prod(weight shape) x the positions of the output (of the input, for a transposed conv)."""
    positions = (x.shape if transposed else out.shape)[2:]
    return x.shape[0] * math.prod(weight_shape) * math.prod(positions)


def _norm(x: torch.Tensor, affine: bool) -> int:
    """A norm that computes statistics: 5 per element with an affine transform, 4 without."""
    return _numel(x) * (5 if affine else 4)


def _batch_norm(x: torch.Tensor, affine: bool, training: bool) -> int:
    """In eval mode the running statistics are used: 2 per element with affine, 1 without."""
    return _norm(x, affine) if training else _numel(x) * (2 if affine else 1)


def _einsum(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """fvcore's einsum count: two equations by formula, others numpy's optimal-path FLOPs halved."""
    equation = equation.replace(" ", "")
    letters = dict.fromkeys(k for k in equation if k.isalpha())
    equation = equation.translate({ord(k): 97 + i for i, k in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    arrays = [np.broadcast_to(np.zeros(()), s) for s in shapes]
    report = np.einsum_path(equation, *arrays, optimize="optimal")[1]
    for line in report.split("\n"):
        if "optimized flop" in line.lower():
            return math.floor(float(line.split(":")[-1]) / 2)
    raise NotImplementedError(f"numpy gave no FLOP count for einsum '{equation}'")


# --------------------------------------------------------------------------------------------------
# functions and tensor methods, by name; each returns (operator, flops) or None for "counts as zero"

FunctionHandler = Callable[[Any, str, tuple, dict, Any], "Count | list[Count] | None"]


def _conv_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    transposed = name.startswith("conv_transpose")
    return "conv", conv_flops(x, tuple(weight.shape), out, transposed)


def _linear_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    x, weight = args[0], _arg(args, kwargs, 1, "weight")
    return "linear", _numel(x) * weight.shape[0]


def _addmm(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    a, b = _arg(args, kwargs, 1, "mat1"), _arg(args, kwargs, 2, "mat2")
    return "addmm", a.shape[0] * a.shape[1] * b.shape[1]


def _matmul(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    a, b = args[0], _arg(args, kwargs, 1, "other")
    if name == "__rmatmul__":
        a, b = b, a
    return ("mm" if name == "mm" else "matmul"), _numel(a) * b.shape[-1]


def _bmm(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    n, c, t = args[0].shape
    return "bmm", n * c * t * _arg(args, kwargs, 1, "mat2").shape[-1]


def _einsum_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    operands = args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    return "einsum", _einsum(args[0], [tuple(t.shape) for t in operands])


def _batch_norm_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    if func is torch.batch_norm:  # the aten order: input, weight, bias, mean, var, training, ...
        weight, training = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 5, "training", False)
    else:  # F.batch_norm: input, running_mean, running_var, weight, bias, training, ...
        weight, training = _arg(args, kwargs, 3, "weight"), _arg(args, kwargs, 5, "training", False)
    return "batch_norm", _batch_norm(args[0], weight is not None, bool(training))


def _instance_norm_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    weight = (
        _arg(args, kwargs, 1, "weight") if func is torch.instance_norm else _arg(args, kwargs, 3, "weight")
    )
    return "instance_norm", _norm(args[0], weight is not None)


def _group_or_layer_norm(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    return name, _norm(args[0], _arg(args, kwargs, 2, "weight") is not None)


def _interpolate(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count | None:
    mode = {"upsample_bilinear": "bilinear", "upsample_nearest": "nearest"}.get(
        name, _arg(args, kwargs, 3, "mode", "nearest")
    )
    if args[0].dim() != 4 or _arg(args, kwargs, 6, "antialias", False):
        return None
    if mode == "nearest":
        return "upsample_nearest2d", _numel(out)
    if mode == "bilinear":
        return "upsample_bilinear2d", 4 * _numel(out)
    return None


def _adaptive_avg_pool2d(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    return "adaptive_avg_pool2d", _numel(args[0])


def _grid_sample(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> Count:
    return "grid_sampler", 4 * _numel(out)


FUNCTIONS: dict[OpKey, FunctionHandler] = {
    **dict.fromkeys(
        ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
        _conv_function,
    ),
    "linear": _linear_function,
    "addmm": _addmm,
    **dict.fromkeys(("matmul", "__matmul__", "__rmatmul__", "mm"), _matmul),
    "bmm": _bmm,
    "einsum": _einsum_function,
    "batch_norm": _batch_norm_function,
    "instance_norm": _instance_norm_function,
    "group_norm": _group_or_layer_norm,
    "layer_norm": _group_or_layer_norm,
    **dict.fromkeys(("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"), _interpolate),
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "grid_sample": _grid_sample,
}


# --------------------------------------------------------------------------------------------------
# multi-head attention: fvcore's forward takes the fused fast path where torch allows it (count 0)


def _mha_fast_path(module: nn.MultiheadAttention, query: Any, key: Any, value: Any, kwargs: dict) -> bool:
    """Whether ``nn.MultiheadAttention.forward`` runs ``torch._native_multi_head_attention`` for these
    arguments on the module's own device, without gradients (as in fvcore's count): torch's conditions."""
    masks = (kwargs.get("attn_mask"), kwargs.get("key_padding_mask"))
    if any(m is not None and torch.is_floating_point(m) for m in masks):
        return False
    weight, bias = module.in_proj_weight, module.in_proj_bias
    param = next(module.parameters(), None)
    device = param.device.type if param is not None else "cpu"
    return (
        torch.backends.mha.get_fastpath_enabled()
        and query.dim() == 3
        and query is key
        and key is value
        and weight is not None
        and bias is not None
        and query.dtype == weight.dtype == bias.dtype
        and not module.training
        and module.num_heads % 2 == 0
        and module.batch_first
        and module.bias_k is None
        and module.bias_v is None
        and not module.add_zero_attn
        and module._qkv_same_embed_dim
        and not torch.is_autocast_enabled()
        and device in ("cpu", "cuda", torch._C._get_privateuse1_backend_name())
    )


@dataclass(frozen=True)
class _Attention:
    """What ``F.multi_head_attention_forward`` is called with, as far as its counted ops depend on it."""

    query: Any  # (L, N, E) or (L, E)
    key: Any
    value: Any
    embed: int
    heads: int
    out_features: int
    proj_widths: tuple[int, int, int] | None = None  # separate q/k/v projection weights' output widths
    need_weights: bool = True
    masked: bool = False
    extra_keys: int = 0  # bias_k and a zero attention row add one key each


def _attention_counts(a: _Attention) -> list[Count]:
    """``F.multi_head_attention_forward`` as fvcore sees its aten ops: the in- and out-projections
    (linear), and, when attention weights are returned without a mask, the two ``bmm`` products (with a
    mask the first is a ``baddbmm``, which fvcore counts as 0; without weights the product is
    ``scaled_dot_product_attention``, also 0)."""
    q, k, v = a.query, a.key, a.value
    if a.proj_widths is not None:
        counts = [_numel(t) * w for t, w in zip((q, k, v), a.proj_widths, strict=True)]
    elif k is v and q is k:
        counts = [_numel(q) * 3 * a.embed]
    elif k is v:
        counts = [_numel(q) * a.embed, _numel(k) * 2 * a.embed]
    else:
        counts = [_numel(t) * a.embed for t in (q, k, v)]
    found: list[Count] = [("linear", c) for c in counts]
    if a.need_weights:
        batch = q.shape[1] if q.dim() == 3 else 1
        product = batch * a.heads * q.shape[0] * (a.embed // a.heads) * (k.shape[0] + a.extra_keys)
        found += [("bmm", product)] * (1 if a.masked else 2)
    found.append(("linear", _numel(q) // q.shape[-1] * a.embed * a.out_features))
    return found


def _mha_function(func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> list[Count]:
    def get(index: int, key: str, default: Any = None) -> Any:
        return _arg(args, kwargs, index, key, default)

    widths = None
    if get(17, "use_separate_proj_weight", False):
        names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        widths = tuple(get(18 + i, key).shape[0] for i, key in enumerate(names))
    return _attention_counts(
        _Attention(
            args[0], args[1], args[2], embed=args[3], heads=args[4],
            out_features=get(11, "out_proj_weight").shape[0], proj_widths=widths,
            need_weights=get(15, "need_weights", True),
            masked=get(14, "key_padding_mask") is not None or get(16, "attn_mask") is not None,
            extra_keys=int(get(7, "bias_k") is not None) + int(bool(get(9, "add_zero_attn", False))),
        )
    )  # fmt: skip


FUNCTIONS["multi_head_attention_forward"] = _mha_function  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------------
# leaf modules with a formula (the others are run under the counting mode)

ModuleHandler = Callable[[nn.Module, tuple, dict, Any], "Count | list[Count] | None"]


def _conv_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count:
    transposed = isinstance(m, nn.modules.conv._ConvTransposeNd)
    return "conv", conv_flops(args[0], tuple(m.weight.shape), out, transposed)


def _linear_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count:
    return "linear", _numel(args[0]) * m.weight.shape[0]


def _batch_norm_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count:
    training = m.training or (m.running_mean is None and m.running_var is None)
    return "batch_norm", _batch_norm(args[0], m.weight is not None, training)


def _norm_module(name: str) -> ModuleHandler:
    def handler(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count:
        return name, _norm(args[0], getattr(m, "weight", None) is not None)

    return handler


def _upsample_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count | None:
    return _interpolate(F.interpolate, "interpolate", args, {"mode": m.mode}, out)


def _adaptive_avg_pool2d_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count:
    return "adaptive_avg_pool2d", _numel(args[0])


def _mha_module(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> Count | list[Count]:
    def get(index: int, key: str, default: Any = None) -> Any:
        return _arg(args, kwargs, index, key, default)

    query = args[0]
    key, value = get(1, "key", query), get(2, "value", query)
    if _mha_fast_path(m, query, key, value, kwargs):
        return "_native_multi_head_attention", 0
    if m.batch_first and query.dim() == 3:  # the module transposes to (length, batch, embed) first
        query, key, value = _transposed_alike(query, key, value)
    separate = None if m._qkv_same_embed_dim else (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
    return _attention_counts(
        _Attention(
            query, key, value, embed=m.embed_dim, heads=m.num_heads, out_features=m.out_proj.weight.shape[0],
            proj_widths=None if separate is None else tuple(w.shape[0] for w in separate),
            need_weights=get(4, "need_weights", True),
            masked=get(3, "key_padding_mask") is not None or get(5, "attn_mask") is not None,
            extra_keys=int(m.bias_k is not None) + int(m.add_zero_attn),
        )
    )  # fmt: skip


def _transposed_alike(query: Any, key: Any, value: Any) -> tuple[Any, Any, Any]:
    """(L, N, E) views of batch-first tensors that keep which of them are the same tensor."""
    q = query.transpose(1, 0)
    k = q if key is query else key.transpose(1, 0)
    v = k if value is key else q if value is query else value.transpose(1, 0)
    return q, k, v


_MODULES: dict[type, ModuleHandler] = {
    **dict.fromkeys(
        (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
        _conv_module,
    ),
    nn.Linear: _linear_module,
    **dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm), _batch_norm_module),
    nn.GroupNorm: _norm_module("group_norm"),
    nn.LayerNorm: _norm_module("layer_norm"),
    **dict.fromkeys((nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d), _norm_module("instance_norm")),
    nn.Upsample: _upsample_module,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool2d_module,
    nn.MultiheadAttention: _mha_module,
}


def function_handler(func: Any, name: str) -> FunctionHandler | None:
    """The formula for ``func`` (or, for a tensor method, called by ``name``), or None."""
    return FUNCTIONS.get(op_key(func) if func is not None else name)


def has_flop_formula(op: type | Any) -> bool:
    """Whether a module class or a function has a FLOP formula of its own."""
    return op in _MODULES if isinstance(op, type) else op_key(op) in FUNCTIONS


def register_flop_formula(
    op: type | Any, handler: ModuleHandler | FunctionHandler, *, replace: bool = False
) -> None:
    """Register ``handler`` as the FLOP formula of a module class or a function (see ``op_keys.op_key``);
    an op that has one already is refused unless ``replace``."""
    table: dict[Any, Any] = _MODULES if isinstance(op, type) else FUNCTIONS
    key = op if isinstance(op, type) else op_key(op)
    if key in table and not replace:
        what = f"{op.__module__}.{op.__qualname__}" if isinstance(op, type) else describe(key)
        raise ValueError(f"{what} has a FLOP formula already; pass replace=True to replace it")
    table[key] = handler


def module_handler(module: nn.Module) -> ModuleHandler | None:
    for cls in type(module).__mro__:
        handler = _MODULES.get(cls)
        if handler is not None:
            return handler
    return None
