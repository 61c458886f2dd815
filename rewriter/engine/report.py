"""Before/after reports: what each model in a rewrite costs, measured on the actual modules.

Parameters and FLOPs come from fvcore, b_min and the unproductive count from the analysis, latency from
timing batch-1 forward passes on the CPU (median of repeated runs after warm-up). Latency varies from run
to run; everything else in a report is deterministic.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._text import human, render_table
from ..analysis.analyzer import Analysis, analyze
from ..analysis.cost import FLOP_CONVENTION
from ..analysis.modes import eval_mode


@dataclass(frozen=True)
class Measurement:
    """One model's figures at the report's input size."""

    label: str
    params: int
    flops: int
    border_layer_min: str | None
    unproductive: int
    latency_ms: float | None = None
    flops_per_image: float | None = None  # a model that routes each image: mean FLOPs per test image

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "params": self.params,
            "flops": self.flops,
            "flops_per_image": None if self.flops_per_image is None else round(self.flops_per_image),
            "border_layer_min": self.border_layer_min,
            "unproductive_layers": self.unproductive,
            "latency_ms": self.latency_ms,
        }


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 15,
) -> float:
    """Median wall time of one forward pass in milliseconds (eval mode, no autograd, CPU by default)."""
    param = next(model.parameters(), None)
    x = torch.zeros(batch, in_channels, *input_size)
    x = x if param is None else x.to(param)
    times = []
    with eval_mode(model), torch.inference_mode():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    label: str,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    latency: bool = True,
) -> tuple[Measurement, Analysis]:
    """Analyze ``model`` (with FLOPs) and time it; return the figures and the analysis."""
    analysis = analyze(model, input_size, in_channels=in_channels, leaf_modules=leaf_modules, name=label)
    measurement = Measurement(
        label=label,
        params=analysis.params,
        flops=analysis.flops or 0,
        border_layer_min=analysis.border_layer_min,
        unproductive=len(analysis.unproductive_layers),
        latency_ms=measure_latency(model, input_size, in_channels=in_channels) if latency else None,
        flops_per_image=getattr(model, "flops_per_image", None),  # input-adaptive models measure their own
    )
    return measurement, analysis


def percent(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old == 0:
        return None
    return round(100.0 * (new - old) / old, 2)


@dataclass(frozen=True)
class Report:
    """Figures of the baseline and of the model after each step, with deltas against the baseline."""

    model: str
    input_size: tuple[int, int]
    rows: tuple[Measurement, ...]
    recipe: dict[str, Any] = field(default_factory=dict)
    plans: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def baseline(self) -> Measurement:
        return self.rows[0]

    def deltas(self, row: Measurement) -> dict[str, float | None]:
        base = self.baseline
        return {
            "params_percent": percent(row.params, base.params),
            "flops_percent": percent(row.flops, base.flops),
            "latency_percent": percent(row.latency_ms, base.latency_ms),
            "flops_per_image_percent": percent(row.flops_per_image, base.flops),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "flop_convention": FLOP_CONVENTION,
            "recipe": self.recipe,
            "rows": [{**row.to_json(), "delta": self.deltas(row)} for row in self.rows],
            "plans": list(self.plans),
            "notes": [*self.notes, *self.routing_notes],
        }

    @property
    def routing_notes(self) -> tuple[str, ...]:
        """What a model that routes each image costs per image against the input model, said plainly."""
        base = self.baseline
        lines = []
        for row in self.rows:
            if row.flops_per_image is None:
                continue
            saved = 1 - row.flops_per_image / base.flops if base.flops else 0.0
            verdict = (
                f"saves {saved:.1%} of the input model's {human(base.flops)} FLOPs per image"
                if saved > 0
                else f"saves nothing: it costs {-saved:.1%} more than the input model's {human(base.flops)} "
                "(the router sends most images through every unit, and the router itself costs FLOPs)"
            )
            lines.append(f"{row.label}: routed per image, {human(row.flops_per_image)} FLOPs per test image "
                         f"on average (router included): routing {verdict}")  # fmt: skip
        return tuple(lines)

    def format(self) -> str:
        routed = any(row.flops_per_image is not None for row in self.rows)
        headers = [
            "",
            "params",
            "d params",
            "FLOPs",
            "d FLOPs",
            "b_min",
            "unproductive",
            "latency",
            "d latency",
        ]
        table = []
        for row in self.rows:
            d = self.deltas(row)
            latency = f"{row.latency_ms:.2f} ms" if row.latency_ms is not None else "-"
            cells = [
                row.label, human(row.params), _signed(d["params_percent"]), human(row.flops),
                _signed(d["flops_percent"]), row.border_layer_min or "none", str(row.unproductive), latency,
                _signed(d["latency_percent"]),
            ]  # fmt: skip
            if routed:
                per_image = row.flops if row.flops_per_image is None else row.flops_per_image
                cells[5:5] = [human(per_image), _signed(percent(per_image, self.baseline.flops))]
            table.append(cells)
        if routed:
            headers[5:5] = ["FLOPs/image", "d FLOPs/image"]
        h, w = self.input_size
        lines = [
            f"{self.model} at {h}x{w} (FLOPs: {FLOP_CONVENTION}; latency: batch 1 on the CPU, median)",
            render_table(headers, table, align="<>>>>" + (">>" if routed else "") + "<>>>"),
        ]
        lines += [f"note: {n}" for n in (*self.notes, *self.routing_notes)]
        return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "-" if value is None or value == 0 else f"{value:+.1f}%"
