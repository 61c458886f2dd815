"""FLOPs counted from the shape pass, without arithmetic, in fvcore's convention.

fvcore (``FlopCountAnalysis``) jit-traces the model, runs a real forward pass and applies one formula per
aten op: one fused multiply-add counts as one flop for convolutions, linear layers and matrix products;
a batch norm in eval mode costs 1 per element (2 with an affine transform), a norm that computes its
statistics 4 (5 with affine); nearest upsampling 1 per output element, bilinear 4; adaptive average
pooling 1 per input element; every other op (activations, additions, max pooling, softmax, ...) 0.
The same formulas are applied here to the tensors of the meta-device pass that already gives every
node's shape (``shapes.record_shapes``), so a count costs no arithmetic and no second trace.

Ops are seen at the level fvcore sees them. fx nodes are counted from their module or function and its
shapes; a leaf module with no formula of its own is run under a ``TorchFunctionMode`` that counts the
torch functions it calls. Where fvcore's forward takes a fused kernel it has no formula for (the fast path
of ``nn.MultiheadAttention`` in eval mode, ``_native_multi_head_attention``), the count is 0 as in fvcore,
and the op is listed among the skipped ops. ``tests/analysis/test_flops.py`` holds the totals against
fvcore's; ``benchmarks/flops_vs_fvcore.py`` compares every torchvision classifier, op by op.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .rules import SHAPE_PRESERVING_MODULES

FLOP_CONVENTION = "fvcore: one fused multiply-add counts as one flop"
FLOP_BACKENDS = ("meta", "fvcore")

Count = tuple[str, int]  # (operator name as fvcore's by_operator() names it, flops)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass: the total, per operator, per graph node, and the ops counted as zero."""

    total: int
    by_operator: tuple[tuple[str, int], ...] = ()
    by_node: tuple[tuple[str, int], ...] = ()  # LayerGraph name -> flops, for nodes that cost any
    skipped_ops: tuple[tuple[str, int], ...] = ()  # ops that do arithmetic the convention counts as 0


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


_FUNCTIONS: dict[str, FunctionHandler] = {
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

#: ops that move or select values without arithmetic (fvcore ignores them too): not listed as skipped
_NO_ARITHMETIC = frozenset((
    "view", "reshape", "permute", "transpose", "flatten", "unflatten", "contiguous", "size", "dim",
    "getitem", "__getitem__", "__setitem__", "getattr", "__get__", "cat", "concat", "concatenate", "stack",
    "chunk", "split", "tensor_split", "unbind", "expand", "expand_as", "unsqueeze", "squeeze", "to",
    "type", "type_as", "float", "half", "double", "bfloat16", "detach", "narrow", "select", "index_select",
    "gather", "roll", "pad", "constant_pad_nd", "relu", "relu_", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "identity", "Identity", "Dropout", "Dropout1d",
    "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout", "Flatten", "Unflatten", "ReLU",
    "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "ChannelShuffle", "channel_shuffle",
    "native_channel_shuffle", "repeat", "tile", "new_zeros", "new_ones", "new_empty", "new_full", "zeros",
    "ones", "zeros_like", "ones_like", "empty", "arange", "meshgrid", "masked_fill", "clone", "numel",
    "stochastic_depth", "_assert", "is_nested", "dtype", "device", "shape",
))  # fmt: skip


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


_FUNCTIONS["multi_head_attention_forward"] = _mha_function  # type: ignore[assignment]


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


def module_handler(module: nn.Module) -> ModuleHandler | None:
    for cls in type(module).__mro__:
        handler = _MODULES.get(cls)
        if handler is not None:
            return handler
    return None


# --------------------------------------------------------------------------------------------------
# the counter


class _CountingMode(TorchFunctionMode):
    """Counts the torch functions a module without a formula calls (each as fvcore would see it)."""

    def __init__(self, counter: FlopCounter, node: str) -> None:
        super().__init__()
        self.counter, self.node = counter, node

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.counter.add_function(self.node, func, getattr(func, "__name__", ""), args, kwargs, out)
        return out


class FlopCounter:
    """Collects the FLOPs of every node while the shape pass runs (``shapes.record_shapes``)."""

    def __init__(self) -> None:
        self.by_node: Counter[str] = Counter()
        self.by_operator: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def _add(self, node: str, found: Count | list[Count] | None, op_name: str) -> None:
        if found is None:
            if op_name not in _NO_ARITHMETIC and not op_name.startswith("_"):
                self.skipped[op_name] += 1
            return
        for operator, flops in found if isinstance(found, list) else [found]:
            if flops == 0:
                self.skipped[operator] += 1
                continue
            self.by_node[node] += flops
            self.by_operator[operator] += flops

    def add_function(self, node: str, func: Any, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """Count a function (``func``; for a tensor method, its name) called with ``args`` -> ``out``."""
        handler = _FUNCTIONS.get(name)
        self._add(node, handler(func, name, args, kwargs, out) if handler else None, name)

    def needs_mode(self, module: nn.Module | None, func: Any) -> bool:
        """Whether a node's FLOPs must be collected from inside it: a leaf module without a formula that
        is not known to do no counted arithmetic, or a wrapped Python function from outside torch."""
        if module is not None:
            return module_handler(module) is None and not isinstance(module, SHAPE_PRESERVING_MODULES)
        name = getattr(func, "__name__", "")
        module_name = getattr(func, "__module__", None) or ""
        return (
            callable(func)
            and name not in _FUNCTIONS
            and not module_name.startswith(("torch", "_operator", "operator", "builtins"))
            and hasattr(func, "__code__")
        )

    @contextlib.contextmanager
    def inside(self, node: str) -> Iterator[None]:
        with _CountingMode(self, node):
            yield

    def add_module(self, node: str, module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        handler = module_handler(module)
        self._add(node, handler(module, args, kwargs, out) if handler else None, type(module).__name__)

    def result(self) -> FlopCount:
        return FlopCount(
            total=sum(self.by_operator.values()),
            by_operator=tuple(sorted(self.by_operator.items())),
            by_node=tuple(self.by_node.items()),
            skipped_ops=tuple(sorted(self.skipped.items())),
        )
