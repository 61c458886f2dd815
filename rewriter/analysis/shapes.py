"""Shape propagation over a traced model: every node's output shape at the target size, on the meta device
where the model allows (no arithmetic), else with one real forward pass; and, when a model does not run
at a size, the sizes it does run at."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .._errors import InputSizeError
from .._text import one_line
from . import rules
from .flops_meta import FlopCounter
from .meta import CachedInterpreter, OnMeta
from .rules import Recorded, TensorShape


class _ShapeRecorder(CachedInterpreter):
    """Runs the traced model once and records each node's output shape(s) and plain argument values in
    ``self.recorded`` (beside the graph: the GraphModule is shared by analyses at other sizes).

    Like fx's ShapeProp, but a failure names the node by its LayerGraph name and prints nothing.
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        names: dict[fx.Node, str],
        input_size: tuple[int, int],
        counter: FlopCounter | None = None,
        modules: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__(gm, modules)
        self.names = names
        self.input_size = input_size
        self.counter = counter
        self.failure = ""  # the failing node's message (fx appends its own notes to the exception)
        self.recorded = Recorded()

    def run_node(self, n: fx.Node) -> Any:
        try:
            if n.op in ("call_function", "call_method", "call_module"):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                self.recorded.arguments[n] = fx.node.map_aggregate(
                    (args, kwargs), lambda v: None if isinstance(v, torch.Tensor) else v
                )
                result = self._run_counted(n, args, kwargs) if self.counter else super().run_node(n)
            else:
                result = super().run_node(n)
        except Exception as err:
            self.failure = self._message(n, err)
            raise InputSizeError(self.failure) from err
        found = False

        def record(obj: Any) -> Any:
            nonlocal found
            if isinstance(obj, torch.Tensor):
                found = True
                return TensorShape(tuple(obj.shape), obj.dtype)
            return obj

        meta = fx.node.map_aggregate(result, record)
        if found:
            self.recorded.outputs[n] = meta
        return result

    def _run_counted(self, n: fx.Node, args: tuple, kwargs: dict) -> Any:
        """Run one node and add its FLOPs: by formula from its shapes, or collected from inside it."""
        counter, name = self.counter, self.names.get(n, n.name)
        module = self.fetch_attr(n.target) if n.op == "call_module" else None
        func = n.target if n.op == "call_function" else None
        if n.op != "call_method" and counter.needs_mode(module, func):
            with counter.inside(name):
                return super().run_node(n)
        result = super().run_node(n)
        if module is not None:
            counter.add_module(name, module, args, kwargs, result)
        else:
            counter.add_function(name, func, rules.target_name(n), args, kwargs, result)
        return result

    def _message(self, n: fx.Node, err: Exception) -> str:
        name = self.names.get(n, n.name)
        kind = type(self.fetch_attr(n.target)).__name__ if n.op == "call_module" else rules.target_name(n)
        reason = one_line(err)
        h, w = self.input_size
        found = (self.recorded.outputs.get(a) for a in n.all_input_nodes)
        shapes = [meta.shape for meta in found if isinstance(meta, TensorShape)]
        got = f" on an input of shape {list(shapes[0])}" if shapes else ""
        return f"the model does not run at {h}x{w}: layer '{name}' ({kind}) failed{got}: {reason}"


class _MetaShapeRecorder(OnMeta, _ShapeRecorder):
    """Records shapes on the meta device."""


def record_shapes(
    gm: fx.GraphModule,
    names: dict[fx.Node, str],
    example: tuple[tuple[int, ...], torch.dtype, torch.device],
    size: tuple[int, int],
    counter_factory: Callable[[], FlopCounter] | None = None,
    modules: Mapping[str, nn.Module] | None = None,
) -> tuple[Recorded, FlopCounter | None]:
    """Record every node's output shape(s), on the meta device if the model allows, else with a real forward.

    ``example`` is the input's (shape, dtype, device); the real forward, if needed, gets seeded random
    values. With ``counter_factory``, FLOPs are counted in the same pass; the record and the counter that ran
    to the end are returned (a fresh one for the real forward, if the meta pass failed part-way). A model that fails
    on the meta device for a reason of its own (a feature map collapses, a size is asserted) fails the
    same way for real: that is reported without a real forward.
    """
    shape, dtype, device = example
    with torch.no_grad():
        counter = counter_factory() if counter_factory else None
        recorder = _MetaShapeRecorder(gm, names, size, counter, modules)
        on_meta = torch.empty(shape, dtype=dtype, device="meta")
        try:
            recorder.run(on_meta)
            return recorder.recorded, counter
        except Exception as err:  # the model fails at this size, or the meta device cannot run an op
            cannot_tell = _meta_cannot_tell(err.__cause__ or err, lambda: OnMeta(gm, modules).run(on_meta))
            if recorder.failure and not cannot_tell:
                raise InputSizeError(recorder.failure + _working_size_hint(gm, example, size, modules)) from (
                    err.__cause__
                )
        generator = torch.Generator().manual_seed(0)
        real = torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)
        counter = counter_factory() if counter_factory else None
        recorder = _ShapeRecorder(gm, names, size, counter, modules)
        try:
            recorder.run(real)
        except InputSizeError as err:
            hint = _working_size_hint(gm, example, size, modules)
            raise InputSizeError(recorder.failure + hint) from err.__cause__
        return recorder.recorded, counter


class _ValueRead(NotImplementedError):
    """Code asked a meta tensor for its value (``.item()``, ``bool(x)``, ``int(x)``): it has none."""


class _FlagValueReads(TorchDispatchMode):
    """Raises ``_ValueRead`` where a meta tensor's value is read (torch raises a plain RuntimeError)."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            raise _ValueRead(f"{func} reads a value the meta device does not have")
        return func(*args, **(kwargs or {}))


def _meta_cannot_tell(err: BaseException, run_on_meta: Callable[[], Any]) -> bool:
    """Whether a failure on the meta device may be the device's own rather than the model's at this size:
    an op without a meta kernel (``NotImplementedError``), or code that reads a tensor's value, found by
    running on meta again with value reads flagged (only after a failure: the flag costs time on every op).
    Then a real forward decides."""
    if isinstance(err, NotImplementedError):
        return True
    try:
        with _FlagValueReads():
            run_on_meta()
    except _ValueRead:
        return True
    except Exception:  # the same failure: the model's own
        return False
    return True  # it ran this time: the failure was not the model's at this size


_COMMON_SIZES = (32, 64, 96, 128, 224, 256, 299, 384, 512)


def _runs_at(
    gm: fx.GraphModule, example: tuple, size: int, modules: Mapping[str, nn.Module] | None = None
) -> bool:
    """Whether the model runs at ``size`` x ``size``: on meta (cheap), and for real only when the meta
    device cannot tell. Unlike gm(x), an Interpreter prints nothing when the forward fails."""
    shape, dtype, device = example
    full = (*shape[:2], size, size)
    on_meta = torch.empty(full, dtype=dtype, device="meta")
    try:
        OnMeta(gm, modules).run(on_meta)
        return True
    except Exception as err:
        if not _meta_cannot_tell(err, lambda: OnMeta(gm, modules).run(on_meta)):
            return False
    try:
        fx.Interpreter(gm).run(torch.zeros(full, dtype=dtype, device=device))
    except Exception:
        return False
    return True


def _working_size_hint(
    gm: fx.GraphModule, example: tuple, input_size: tuple[int, int], modules: Mapping[str, nn.Module] | None
) -> str:
    """Find a square input size the model runs at: the smallest above the failing one, or a common one.

    Larger sizes are tried first (a collapsing feature map needs a larger input); if one works, a bisection
    finds the smallest. Models that only run at one size (a fixed head, an asserted size) are found among
    the common training sizes.
    """
    failing = max(input_size)
    larger = [s for s in _COMMON_SIZES if s > failing]
    working = next((s for s in larger if _runs_at(gm, example, s, modules)), None)
    if working is None:
        fixed = next((s for s in _COMMON_SIZES if s < failing and _runs_at(gm, example, s, modules)), None)
        return f"; it runs at {fixed}x{fixed}" if fixed else ""
    low, high = failing, working  # low fails, high works
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _runs_at(gm, example, mid, modules) else (mid, high)
    if _runs_at(gm, example, 2 * high, modules):
        return (
            f"; the input is too small for the network: the smallest square input it runs at is {high}x{high}"
        )
    return f"; it runs at {high}x{high} but not at {2 * high}x{2 * high}: the model expects particular input sizes"
