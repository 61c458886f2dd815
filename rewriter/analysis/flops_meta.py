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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.overrides import TorchFunctionMode

from .flop_formulas import Count, function_handler, module_handler
from .rules import SHAPE_PRESERVING_MODULES

FLOP_CONVENTION = "fvcore: one fused multiply-add counts as one flop"
FLOP_BACKENDS = ("meta", "fvcore")


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass: the total, per operator, per graph node, and the ops counted as zero."""

    total: int
    by_operator: tuple[tuple[str, int], ...] = ()
    by_node: tuple[tuple[str, int], ...] = ()  # LayerGraph name -> flops, for nodes that cost any
    skipped_ops: tuple[tuple[str, int], ...] = ()  # ops that do arithmetic the convention counts as 0


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
        handler = function_handler(func, name)
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
            and function_handler(func, name) is None
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
