"""Before/after reports: what each model in a rewrite costs, measured on the actual modules.

Parameters and FLOPs come from the analysis (FLOPs in fvcore's convention, counted by the same counter as
``rewriter analyze``: the meta-device shape pass unless ``flops_backend="fvcore"``), b_min and the
unproductive count (the tail) from the analysis too, latency from
timing batch-1 forward passes on the CPU: after warm-up, runs are repeated until their interquartile range
is within 3 % of the median or a second is spent, and the median, the interquartile range, the runs and the
threads are reported; a spread over 10 % marks the figure as noisy. Latency varies from run to run;
everything else in a report is deterministic.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._text import human, render_table
from ..analysis.analyzer import Analysis
from ..analysis.flops_meta import FLOP_CONVENTION
from ..analysis.modes import eval_mode
from ..analysis.traced_model import analyze

TARGET_SPREAD = 0.03  # stop timing once the interquartile range is this share of the median
NOISY_SPREAD = 0.10  # a measurement whose interquartile range exceeds this share of the median is noisy


@dataclass(frozen=True)
class Latency:
    """Wall time of one call: the median and interquartile range of the timed runs after warm-up, how many
    runs, the intra-op threads torch used, and whether the spread exceeded ``NOISY_SPREAD``."""

    median_ms: float
    iqr_ms: float
    repeats: int
    threads: int
    batch: int = 1
    noisy: bool = False

    @property
    def spread(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    def text(self) -> str:
        """``12.34 ms ±0.56`` (± half the interquartile range), ``noisy`` appended when it is."""
        return f"{self.median_ms:.2f} ms ±{self.iqr_ms / 2:.2f}" + (" noisy" if self.noisy else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median_ms, 4),
            "iqr_ms": round(self.iqr_ms, 4),
            "repeats": self.repeats,
            "threads": self.threads,
            "batch": self.batch,
            "noisy": self.noisy,
        }


def time_call(
    call: Callable[[], Any],
    *,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    max_repeats: int = 200,
    budget_s: float = 1.0,
    target_spread: float = TARGET_SPREAD,
) -> Latency:
    """Time ``call()``: ``warmup`` untimed runs, then at least ``repeats`` timed runs, more until the
    interquartile range is within ``target_spread`` of the median, ``max_repeats`` runs, or ``budget_s``
    seconds of timing are spent."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    started = time.perf_counter()
    while True:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if len(times) < max(repeats, 1):
            continue
        median, iqr = _median_iqr(times)
        settled = median > 0 and iqr / median <= target_spread
        if settled or len(times) >= max_repeats or time.perf_counter() - started >= budget_s:
            break
    median, iqr = _median_iqr(times)
    return Latency(
        median * 1000, iqr * 1000, len(times), torch.get_num_threads(), batch, iqr > NOISY_SPREAD * median
    )


def _median_iqr(times: Sequence[float]) -> tuple[float, float]:
    if len(times) < 4:
        return statistics.median(times), max(times) - min(times)
    q1, q2, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q2, q3 - q1


def time_model(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    budget_s: float = 1.0,
) -> Latency:
    """The latency of one forward pass (eval mode, no autograd, on the model's device; CPU by default)."""
    param = next(model.parameters(), None)
    x = torch.zeros(batch, in_channels, *input_size)
    x = x if param is None else x.to(param)

    def call() -> None:
        model(x)
        if x.is_cuda:  # kernels run asynchronously: wait for them, or the time is the launch's
            torch.cuda.synchronize(x.device)

    with eval_mode(model), torch.inference_mode():
        return time_call(call, batch=batch, warmup=warmup, repeats=repeats, budget_s=budget_s)


def measure_latency(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 15,
) -> float:
    """Median wall time of one forward pass in milliseconds (``time_model``'s median)."""
    return time_model(
        model, input_size, in_channels=in_channels, batch=batch, warmup=warmup, repeats=repeats
    ).median_ms


@dataclass(frozen=True)
class Measurement:
    """One model's figures at the report's input size."""

    label: str
    params: int
    flops: int
    border_layer_min: str | None
    unproductive: int
    latency: Latency | None = None
    flops_per_image: float | None = None  # a model that routes each image: mean FLOPs per test image
    flops_backend: str = "meta"  # the counter that counted ``flops`` (``analyze``'s flops_backend)

    @property
    def latency_ms(self) -> float | None:
        return self.latency.median_ms if self.latency is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "params": self.params,
            "flops": self.flops,
            "flops_per_image": None if self.flops_per_image is None else round(self.flops_per_image),
            "flops_backend": self.flops_backend,
            "border_layer_min": self.border_layer_min,
            "unproductive_layers": self.unproductive,
            "latency_ms": round(self.latency_ms, 4) if self.latency_ms is not None else None,
            "latency": self.latency.to_json() if self.latency is not None else None,
        }


def measure(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    label: str,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    latency: bool = True,
    flops_backend: str = "meta",
) -> tuple[Measurement, Analysis]:
    """Analyze ``model`` (with FLOPs, by ``flops_backend``, as ``rewriter analyze`` counts them) and time
    it; return the figures and the analysis."""
    analysis = analyze(
        model,
        input_size,
        in_channels=in_channels,
        leaf_modules=leaf_modules,
        name=label,
        flops_backend=flops_backend,
    )
    measurement = Measurement(
        flops_backend=analysis.flops_backend or flops_backend,
        label=label,
        params=analysis.params,
        flops=analysis.flops or 0,
        border_layer_min=analysis.border_layer_min,
        unproductive=len(analysis.unproductive_layers),
        latency=time_model(model, input_size, in_channels=in_channels) if latency else None,
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

    def format(self, *, skip_notes: Sequence[str] = ()) -> str:
        """The before/after table, then the notes (except ``skip_notes``, already shown with the plans)."""
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
        table = [self._cells(row, routed) for row in self.rows]
        if routed:
            headers[5:5] = ["FLOPs/image", "d FLOPs/image"]
        h, w = self.input_size
        lines = [
            f"{self.model} at {h}x{w} (FLOPs: {FLOP_CONVENTION}, counted {_counted(self.rows)}; latency: "
            f"{self._timing_text()})",
            render_table(headers, table, align="<>>>>" + (">>" if routed else "") + "<>>>"),
        ]
        noisy_rows = [r.label for r in self.rows if r.latency is not None and r.latency.noisy]
        if noisy_rows:
            lines.append(
                f"note: latency is noisy (interquartile range over {NOISY_SPREAD:.0%} of the median) for "
                f"{', '.join(noisy_rows)}: the machine is busy or the model too fast to time; a latency change "
                "marked ? may be noise"
            )
        notes = dict.fromkeys((*self.notes, *self.routing_notes))
        lines += [f"note: {n}" for n in notes if n not in set(skip_notes)]
        return "\n".join(lines)

    def _cells(self, row: Measurement, routed: bool) -> list[str]:
        d = self.deltas(row)
        base = self.baseline.latency
        noisy = row.latency is not None and (row.latency.noisy or (base is not None and base.noisy))
        cells = [
            row.label, human(row.params), _signed(d["params_percent"]), human(row.flops),
            _signed(d["flops_percent"]), row.border_layer_min or "none", str(row.unproductive),
            row.latency.text() if row.latency is not None else "-",
            _signed(d["latency_percent"]) + (" ?" if noisy and d["latency_percent"] else ""),
        ]  # fmt: skip
        if routed:
            per_image = row.flops if row.flops_per_image is None else row.flops_per_image
            cells[5:5] = [human(per_image), _signed(percent(per_image, self.baseline.flops))]
        return cells

    def _timing_text(self) -> str:
        timed = [r.latency for r in self.rows if r.latency is not None]
        if not timed:
            return "not measured"
        return (
            f"batch 1 on the CPU, median ± half the IQR over {min(t.repeats for t in timed)}+ runs, "
            f"{timed[0].threads} thread{'s' if timed[0].threads != 1 else ''}"
        )


def _counted(rows: Sequence[Measurement]) -> str:
    backends = {row.flops_backend for row in rows}
    return (
        "by fvcore" if backends == {"fvcore"} else "on the meta device" if backends == {"meta"} else "mixed"
    )


def _signed(value: float | None) -> str:
    return "-" if value is None or value == 0 else f"{value:+.1f}%"
