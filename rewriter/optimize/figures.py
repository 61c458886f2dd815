"""A candidate's figures without training, from an analysis on the meta device.

Its analysis gives what the choice needs: parameters, FLOPs, the unproductive layers, where the border is,
and how the final layer's r_min compares with the input (``Figures``); ``measure_candidate`` analyzes a
candidate (a meta copy from ``copies``) and, when asked, times a zero-filled copy of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..analysis import Analysis
from ..analysis.traced_model import trace_model
from ..engine.report import measure_latency
from .copies import is_meta, zeros_copy


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
        real = zeros_copy(model) if is_meta(model) else model
        timing = measure_latency(real, input_size, in_channels=in_channels, warmup=1, repeats=latency_repeats)
    return analysis, figures_of(analysis, timing)


def analyzer_for(
    model: nn.Module, *, in_channels: int = 3, leaf_classes: Sequence[type] = ()
) -> Callable[[tuple[int, int]], Analysis]:
    """A function analyzing ``model`` at any size, tracing it once (what a sweep over sizes uses)."""
    return trace_model(model, in_channels=in_channels, leaf_modules=leaf_classes).analyze


def analyze_at(
    model: nn.Module, input_size: tuple[int, int], *, in_channels: int = 3, leaf_classes: Sequence[type] = ()
) -> Analysis:
    """The one place that analyzes a candidate: traced once and analyzed on the meta device, FLOPs counted
    there in fvcore's convention."""
    return analyzer_for(model, in_channels=in_channels, leaf_classes=leaf_classes)(input_size)


def output_classes(analysis: Analysis) -> int | None:
    """The class outputs of the analysed model (None when it does not return [batch, classes])."""
    graph = analysis.graph
    shape = graph[graph.output_name].input_shape if graph is not None else None
    return shape[-1] if shape and len(shape) == 2 else None
