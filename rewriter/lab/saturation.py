"""Saturation (dissertation 2.2-2.3, delve's method): how much of its output space a layer fills.

Forward hooks on every conv and linear layer accumulate the covariance of the layer's output from running
sums (the count, the sum and the sum of outer products, held in float64), treating every feature-map
position as a sample, so memory stays constant however many batches are seen. Each batch's products are
taken around a fixed shift (the first batch's mean), which keeps the float64 sums free of cancellation,
and read from the output in one pass laid out channels-last. The saturation of a layer is the
smallest number of eigendirections of that covariance explaining ``delta`` (0.99) of its variance, divided
by the number of filters; s_mu averages it over the conv and linear layers. A tail is a run of at least three
consecutive layers whose mean saturation is at least 50 % below the mean of the rest (section 8.5.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..analysis.modes import observing

if TYPE_CHECKING:
    from ..analysis.analyzer import Analysis

DELTA = 0.99


class CovarianceAccumulator:
    """Running count, sum and sum of outer products of ``features``-dimensional samples around a shift (the
    mean of the first samples seen), in float64: the shifted-data algorithm, whose covariance does not lose
    digits to a large mean."""

    def __init__(self, features: int, device: torch.device | str = "cpu") -> None:
        self.count = 0
        self.shift: torch.Tensor | None = None
        self.total = torch.zeros(features, dtype=torch.float64, device=device)
        self.outer = torch.zeros(features, features, dtype=torch.float64, device=device)

    def update(self, samples: torch.Tensor) -> None:
        """Add ``[n, features]`` samples (a layer output as ``[N, C, H, W]`` adds its N*H*W positions)."""
        samples = samples.detach()
        channels_last = samples.movedim(1, -1) if samples.dim() > 2 else samples
        if self.shift is None:
            self.shift = channels_last.reshape(-1, channels_last.shape[-1]).double().mean(0)
        # one pass over the output: shifted, in float64, written channels-last so that the reshape is a view
        centred = torch.empty(channels_last.shape, dtype=torch.float64, device=samples.device)
        torch.sub(channels_last, self.shift, out=centred)
        centred = centred.view(-1, channels_last.shape[-1])
        self.count += centred.shape[0]
        self.total += centred.sum(0)
        self.outer += centred.T @ centred

    def covariance(self) -> torch.Tensor:
        mean = self.total / self.count
        return self.outer / self.count - torch.outer(mean, mean)


def saturation_of(covariance: torch.Tensor, delta: float = DELTA) -> tuple[int, float]:
    """(k, k / n): the fewest eigendirections whose eigenvalues explain ``delta`` of the total variance."""
    eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp(min=0)
    total = float(eigenvalues.sum())
    n = covariance.shape[0]
    if total <= 0:
        return 0, 0.0
    explained = torch.cumsum(eigenvalues, 0) / total
    k = int(torch.searchsorted(explained, torch.tensor(delta, dtype=explained.dtype)).item()) + 1
    k = min(k, n)
    return k, k / n


@dataclass(frozen=True)
class LayerSaturation:
    name: str
    type: str
    features: int
    k: int
    saturation: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "features": self.features,
            "k": self.k,
            "saturation": round(self.saturation, 6),
        }


@dataclass(frozen=True)
class SaturationReport:
    """Per-layer saturation, s_mu, and the tails found."""

    layers: tuple[LayerSaturation, ...]
    delta: float
    samples: int
    tails: tuple[tuple[str, ...], ...]

    @property
    def mean(self) -> float:
        """s_mu over the conv and linear layers."""
        return sum(layer.saturation for layer in self.layers) / max(len(self.layers), 1)

    def to_json(self, analysis: Analysis | None = None) -> dict[str, Any]:
        """The JSON of ``rewriter saturation --json``; with ``analysis``, each layer's receptive field too."""
        return {
            "delta": self.delta,
            "images": self.samples,
            "s_mu": round(self.mean, 6),
            **borders_json(analysis),
            "layers": [{**layer.to_json(), **field_json(layer.name, analysis)} for layer in self.layers],
            "tails": [list(tail) for tail in self.tails],
        }


def borders_json(analysis: Analysis | None) -> dict[str, Any]:
    if analysis is None:
        return {}
    return {
        "input_size": list(analysis.input_size),
        "border_layer_min": analysis.border_layer_min,
        "border_layer_max": analysis.border_layer_max,
    }


def field_json(name: str, analysis: Analysis | None) -> dict[str, Any]:
    """The receptive field of a layer's input and its border verdict, from ``analysis`` (if it has the layer)."""
    if analysis is None or name not in analysis.layer_names():
        return {}
    layer = analysis.layer(name)
    return {"r_in_min": layer.to_json()["r_in_min"], "productive": layer.productive}


def find_tails(values: list[float], *, length: int = 3, ratio: float = 0.5) -> list[tuple[int, int]]:
    """Runs ``[start, stop)`` of >= ``length`` consecutive layers whose mean saturation is at least ``ratio``
    below the mean of all the other layers (dissertation 8.5.2).

    Every window that qualifies is found; overlapping ones are merged where the union still qualifies (else
    the one with the lower mean is kept), and a run is trimmed at either end while its end layer alone is not
    ``ratio`` below the others and the trimmed run still qualifies (a window qualifies on its mean, so
    without trimming a strong neighbour rides along with a low core). Every run returned qualifies.
    """
    n = len(values)

    def qualifies(start: int, stop: int) -> bool:
        rest = values[:start] + values[stop:]
        mean = sum(values[start:stop]) / (stop - start)
        return stop - start >= length and bool(rest) and mean <= (1 - ratio) * sum(rest) / len(rest)

    def low(i: int, start: int, stop: int) -> bool:
        rest = values[:start] + values[stop:]
        return bool(rest) and values[i] <= (1 - ratio) * sum(rest) / len(rest)

    def mean(window: tuple[int, int]) -> float:
        return sum(values[window[0] : window[1]]) / (window[1] - window[0])

    hits = [(a, b) for a in range(n) for b in range(a + length, n + 1) if qualifies(a, b)]
    merged: list[tuple[int, int]] = []
    for start, stop in hits:  # by start: merge overlaps while the union still qualifies, else keep the lower
        if merged and start <= merged[-1][1]:
            union = (merged[-1][0], max(stop, merged[-1][1]))
            if qualifies(*union):
                merged[-1] = union
            elif mean((start, stop)) < mean(merged[-1]) and (len(merged) < 2 or start > merged[-2][1]):
                merged[-1] = (start, stop)
        else:
            merged.append((start, stop))
    trimmed = []
    for start, stop in merged:
        changed = True
        while changed:
            changed = False
            if not low(start, start, stop) and qualifies(start + 1, stop):
                start, changed = start + 1, True
            if not low(stop - 1, start, stop) and qualifies(start, stop - 1):
                stop, changed = stop - 1, True
        trimmed.append((start, stop))
    return trimmed


def tracked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv and linear layers whose outputs are recorded, in registration order."""
    return [
        (name, m) for name, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]


def saturation_taps(
    model: nn.Module, *, delta: float = DELTA, device: torch.device | str = "cpu", progress: bool = False
) -> tuple[dict[str, Callable[[torch.Tensor], None]], Callable[[int], SaturationReport]]:
    """Per conv and linear layer, a callable that adds one output of the layer to its covariance, and a
    ``finish(images)`` that computes the report from what they saw over that many images (one
    eigendecomposition per layer, with a progress bar per layer if ``progress``). For callers that run the
    model themselves."""
    layers = tracked_layers(model)
    accumulators: dict[str, CovarianceAccumulator] = {}
    order: list[str] = []

    def tap(name: str) -> Callable[[torch.Tensor], None]:
        def record(output: torch.Tensor) -> None:
            if name not in accumulators:
                accumulators[name] = CovarianceAccumulator(output.shape[1], output.device)
                order.append(name)  # execution order
            accumulators[name].update(output)

        return record

    taps = {name: tap(name) for name, _ in layers}
    kinds = {name: type(module).__name__ for name, module in layers}

    def finish(images: int) -> SaturationReport:
        from .._progress import progress_bar

        results = []
        for name in progress_bar(
            order, desc="saturation per layer", show=progress, leave=False, unit="layer"
        ):
            k, value = saturation_of(accumulators[name].covariance(), delta)
            results.append(LayerSaturation(name, kinds[name], accumulators[name].total.numel(), k, value))
        tails = find_tails([r.saturation for r in results])
        return SaturationReport(
            tuple(results), delta, images, tuple(tuple(r.name for r in results[a:b]) for a, b in tails)
        )

    return taps, finish


def compute_saturation(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, Any]],
    *,
    delta: float = DELTA,
    device: torch.device | str = "cpu",
    progress: bool = False,
    total: int | None = None,
) -> SaturationReport:
    """Saturation of every conv and linear layer of ``model`` over ``batches`` (eval mode, no gradients)."""
    from .._progress import progress_bar

    modules = dict(model.named_modules())
    taps, finish = saturation_taps(model, delta=delta, device=device, progress=progress)
    hooks = [(modules[name], lambda _m, _i, out, tap=tap: tap(out)) for name, tap in taps.items()]
    images = 0
    with observing(model, hooks):
        for x, _ in progress_bar(
            batches, total=total, desc="saturation", show=progress, leave=False, unit="batch"
        ):
            model(x.to(device))
            images += len(x)
    return finish(images)
