"""Evaluating one candidate without training: its figures, from an analysis on the meta device.

A candidate is built from its parent by the strategy's own ``plan`` and ``apply`` on a copy of the parent
whose tensors live on the meta device (shapes only, no storage, no arithmetic), so hundreds of candidates
cost no more memory than one. Its analysis gives what the choice needs: parameters, FLOPs, the unproductive
layers, where the border is, and how the final layer's r_min compares with the input. ``check_structure``
is invariant 2 of ``rewriter.rewrite`` as far as shapes can tell it: every tensor of the new model is one
the plan declares new, or an input tensor of the same shape and dtype; the values are compared when the
chosen candidate is rewritten for real.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import RewriteError
from ..analysis import Analysis, analyze
from ..analysis.cost import count_flops
from ..analysis.tracing import is_traced_module
from ..engine.plan import Plan
from ..engine.report import measure_latency

try:  # the analyzer's one-trace, meta-device path (issue 11)
    from ..analysis.traced import trace_model
except ImportError:  # pragma: no cover - an analyzer without it: fvcore on a zero-filled copy
    trace_model = None

TensorInfo = tuple[tuple[int, ...], torch.dtype, "str | None"]  # shape, dtype, the baseline's key (None: new)


@dataclass(frozen=True)
class Figures:
    """What the choice compares, measured on one model at the target size (border rule ``input``)."""

    params: int
    flops: int
    unproductive: int
    border_layer_min: str | None
    border_distance: int  # listed layers from b_min to the output, b_min included (0: no border)
    final_layer: str | None  # the last conv/pool layer of the border test
    final_r_min: tuple[float, float] | None  # the r_min its input is based on
    fit: float | None  # final_r_min / input size, the smaller over the two axes (<= 1: productive)
    latency_ms: float | None = None

    @property
    def gap(self) -> float:
        """How far the final layer's r_min is from the input: |1 - fit| (inf when nothing is tested)."""
        return math.inf if self.fit is None else abs(1.0 - self.fit)

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "flops": self.flops,
            "latency_ms": self.latency_ms,
            "unproductive_layers": self.unproductive,
            "border_layer_min": self.border_layer_min,
            "border_distance": self.border_distance,
            "final_layer": self.final_layer,
            "final_r_min": None if self.final_r_min is None else [_plain(v) for v in self.final_r_min],
            "fit": None if self.fit is None or math.isinf(self.fit) else round(self.fit, 6),
        }


def _plain(value: float) -> float | int | None:
    return None if math.isinf(value) else int(value) if float(value).is_integer() else value


def figures_of(analysis: Analysis, latency_ms: float | None = None) -> Figures:
    """The figures of an analysis made with the border rule ``input``."""
    tested = [layer for layer in analysis.layers if layer.productive is not None]
    final = tested[-1] if tested else None
    names = [layer.name for layer in analysis.layers]
    border = analysis.border_layer_min
    fit = None
    if final is not None:
        fit = min(r / limit for r, limit in zip(final.r_in_min, analysis.limit, strict=True))
    return Figures(
        params=analysis.params,
        flops=analysis.flops or 0,
        unproductive=len(analysis.unproductive_layers),
        border_layer_min=border,
        border_distance=len(names) - names.index(border) if border in names else 0,
        final_layer=final.name if final else None,
        final_r_min=tuple(final.r_in_min) if final else None,  # type: ignore[arg-type]
        fit=fit,
        latency_ms=latency_ms,
    )


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are on the meta device (no data is copied)."""
    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = tensor.detach().to("meta")
        memo[id(tensor)] = (
            nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
        )
    return copy.deepcopy(model, memo)


def clone_structure(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares its tensors: every module object (and every dict, list
    or set it holds) is new, so setting a stride or replacing a submodule in the copy leaves ``model`` as it
    was; parameters and buffers are shared, which costs nothing on the meta device, where they hold no
    data. Traced modules (GraphModules, whose graph a strategy may rewrite) are deep-copied."""
    if is_traced_module(model):
        return copy.deepcopy(model)
    clone = model.__class__.__new__(model.__class__)
    state = {}
    for key, value in model.__dict__.items():
        if key == "_modules":
            value = {name: None if m is None else clone_structure(m) for name, m in value.items()}
        elif isinstance(value, (dict, list, set)):
            value = copy.copy(value)
        state[key] = value
    clone.__dict__.update(state)
    return clone


def zeros_copy(model: nn.Module) -> nn.Module:
    """A copy of a meta ``model`` on the CPU with every tensor zero: for counting and timing, not for use."""
    real = copy.deepcopy(model).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in itertools.chain(real.parameters(), real.buffers()):
            tensor.zero_()
    return real


def tensor_infos(model: nn.Module) -> dict[str, TensorInfo]:
    """Every tensor of the baseline, recorded as its own origin."""
    return {key: (tuple(t.shape), t.dtype, key) for key, t in model.state_dict().items()}


def check_structure(parent: dict[str, TensorInfo], new: nn.Module, plan: Plan) -> dict[str, TensorInfo]:
    """Invariant 2 on shapes: each tensor of ``new`` is declared new by ``plan`` or is a tensor of the parent
    with the same shape and dtype. Returns the new model's tensors with their origin in the baseline.

    Raises:
        RewriteError: a tensor that is neither (the strategy changed a kept layer without saying so).
    """
    infos = {}
    for key, tensor in new.state_dict().items():
        shape, dtype = tuple(tensor.shape), tensor.dtype
        if plan.is_new(key):
            infos[key] = (shape, dtype, None)
            continue
        old = parent.get(plan.old_key(key))
        if old is None:
            raise RewriteError(
                f"invariant 2 broken: '{key}' is neither a kept tensor nor declared new by the plan"
            )
        if old[:2] != (shape, dtype):
            raise RewriteError(f"invariant 2 broken: kept tensor '{key}' changed shape {old[0]} -> {shape}")
        infos[key] = (shape, dtype, old[2])
    return infos


def measure_candidate(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    leaf_classes: Sequence[type] = (),
    latency: bool = False,
    latency_repeats: int = 5,
) -> tuple[Analysis, Figures]:
    """Analyze a candidate on the meta device (FLOPs included) and, with ``latency``, time it on the CPU
    (a zero-filled copy: timing does not depend on the values)."""
    analysis = analyze_at(model, input_size, in_channels=in_channels, leaf_classes=leaf_classes)
    timing = None
    if latency:
        real = zeros_copy(model) if _is_meta(model) else model
        timing = measure_latency(real, input_size, in_channels=in_channels, warmup=1, repeats=latency_repeats)
    return analysis, figures_of(analysis, timing)


def analyzer_for(
    model: nn.Module, *, in_channels: int = 3, leaf_classes: Sequence[type] = ()
) -> Callable[[tuple[int, int]], Analysis]:
    """A function analyzing ``model`` at any size, tracing it once (what a sweep over sizes uses)."""
    if trace_model is not None:
        traced = trace_model(model, in_channels=in_channels, leaf_modules=leaf_classes)
        return traced.analyze
    return lambda size: analyze_at(model, size, in_channels=in_channels, leaf_classes=leaf_classes)


def analyze_at(
    model: nn.Module, input_size: tuple[int, int], *, in_channels: int = 3, leaf_classes: Sequence[type] = ()
) -> Analysis:
    """The one place that analyzes a candidate: traced once and analyzed on the meta device, FLOPs counted
    there in fvcore's convention (the analyzer's ``trace_model``); where that counter is not available,
    fvcore counts them on a zero-filled CPU copy."""
    if trace_model is not None:
        return trace_model(model, in_channels=in_channels, leaf_modules=leaf_classes).analyze(input_size)
    analysis = analyze(model, input_size, in_channels=in_channels, leaf_modules=leaf_classes, flops=False)
    real = zeros_copy(model) if _is_meta(model) else model
    return dataclasses.replace(analysis, flops=count_flops(real, input_size, in_channels=in_channels).flops)


def _is_meta(model: nn.Module) -> bool:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor is not None and tensor.is_meta


def output_classes(analysis: Analysis) -> int | None:
    """The class outputs of the analysed model (None when it does not return [batch, classes])."""
    graph = analysis.graph
    shape = graph[graph.output_name].input_shape if graph is not None else None
    return shape[-1] if shape and len(shape) == 2 else None
