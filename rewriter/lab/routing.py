"""Input-adaptive depth (paper 004): a router picks, per image, the deepest unit to run; the others are skipped.

``RoutedModel`` holds the router and the backbone, whose skippable units are wrapped in ``Gate`` modules.
For a batch, the router's choice (or a given ``route``) is one label per image; the gate of label unit k
runs its unit on the images whose label is at least k and passes the others' input through unchanged, so
a skipped unit costs nothing and receives no gradient from those images. Every gate counts the images it
ran, which is how FLOPs per image are measured.

When traced (torch.fx for the analysis, torch.jit for fvcore) every gate runs and the router's output is
unused: the traced model is the static backbone. ``routing_stats`` adds the router's own FLOPs to every
image's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..analysis.fx_tracer import is_traced
from ..analysis.modes import eval_mode
from ..engine.surgery import set_submodule


def _tracing(x: torch.Tensor) -> bool:
    """Whether ``x`` is not data but a trace in progress: the analysis's (torch.fx) or fvcore's (torch.jit)."""
    return torch.jit.is_tracing() or is_traced(x)


class _Routes:
    """The labels of the batch in flight, shared by a model's gates; and how many images each gate ran."""

    def __init__(self, units: int) -> None:
        self.route: torch.Tensor | None = None
        self.ran = torch.zeros(units, dtype=torch.long)


class Gate(nn.Module):
    """Runs ``body`` on the images routed at least as deep as ``index``; the others pass through."""

    def __init__(self, body: nn.Module, index: int, routes: _Routes) -> None:
        super().__init__()
        self.body = body
        self.index = index
        self._routes = routes  # a plain attribute: not a module, not in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self._routes.route
        if route is None or _tracing(x):
            return self.body(x)
        run = route >= self.index
        self._routes.ran[self.index] += int(run.sum())
        if bool(run.all()):
            return self.body(x)
        if not bool(run.any()):
            return x
        out = x.clone()
        if self.training and int(run.sum()) == 1:
            # batch norm cannot train on one image: run the whole batch, keep that image's output
            out[run] = self.body(x)[run].to(out.dtype)
        else:
            out[run] = self.body(x[run]).to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return f"label >= {self.index}"


class Router(nn.Module):
    """A small CNN that predicts an image's label (paper 004's CNN 2): two conv-BN-ReLU stages, global
    average pooling, and a linear layer over the labels."""

    def __init__(self, labels: int, *, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(2 * width, labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class RoutedModel(nn.Module):
    """A router and a backbone with gated units: ``model(x)`` routes by the router, ``model(x, route)`` by
    the given labels (how the backbone is trained on the relevance labels)."""

    partial_forward = True  # a batch may leave gated units (and the router) without gradient: DDP must know
    export_refusal = (
        "the routed model picks per image which units run (data-dependent control flow); ONNX and "
        "torch.export record one static graph, which would run every unit and compute something else: save "
        "it as a .pt model file"
    )

    def __init__(self, router: nn.Module, backbone: nn.Module, routes: _Routes, units: list[str]) -> None:
        super().__init__()
        self.router = router
        self.backbone = backbone
        self._routes = routes
        self.units = list(units)  # label unit names, index = label
        self.measured: RoutingStats | None = (
            None  # on the test set, once trained (not saved with the weights)
        )

    def forward(self, x: torch.Tensor, route: torch.Tensor | None = None) -> torch.Tensor:
        if is_traced(x):  # the analysis sees the static backbone
            return self.backbone(x)
        if route is None:
            with torch.no_grad():
                route = self.router(x).argmax(1)
        if torch.jit.is_tracing():
            return self.backbone(x)
        self._routes.route = route
        try:
            return self.backbone(x)
        finally:
            self._routes.route = None

    @property
    def labels(self) -> int:
        return len(self.units)

    @property
    def flops_per_image(self) -> float | None:
        """Mean FLOPs per test image with the router's routing (router included), once measured."""
        return self.measured.mean_flops if self.measured is not None else None

    def train(self, mode: bool = True) -> RoutedModel:
        """The router is trained on its own (relevance labels) and stays in evaluation mode here."""
        super().train(mode)
        self.router.eval()
        return self


def gate_units(model: nn.Module, units: list[Any]) -> tuple[nn.Module, _Routes]:
    """Wrap the skippable label units of ``model`` (changed in place) in gates; return it and their routes.

    A unit of one module becomes ``Gate(module)`` at its path; a unit of consecutive modules in a container
    (conv, norm, activation) becomes ``Gate(Sequential(...))`` at its first module's place, the rest removed.
    """
    routes = _Routes(len(units))
    for index, unit in enumerate(units):
        if not unit.skippable:
            continue
        if len(unit.modules) == 1:
            set_submodule(model, unit.modules[0], Gate(model.get_submodule(unit.modules[0]), index, routes))
            continue
        parent_path = unit.modules[0].rpartition(".")[0]
        parent = model.get_submodule(parent_path) if parent_path else model
        names = [m.rpartition(".")[2] for m in unit.modules]
        body = nn.Sequential(*(parent._modules[n] for n in names))
        rebuilt = {}
        for name, module in parent._modules.items():
            if name == names[0]:
                rebuilt[name] = Gate(body, index, routes)
            elif name not in names:
                rebuilt[name] = module
        parent._modules.clear()
        parent._modules.update(rebuilt)
    return model, routes


@dataclass(frozen=True)
class RoutingStats:
    """How a routed model did on a split: accuracy, where the router sent the images, FLOPs per image.

    ``flops_static`` is the backbone running every unit (the model without routing); an image's FLOPs are
    the router's plus those of the backbone's units it ran."""

    accuracy: float
    images: int
    label_counts: list[int]
    flops_static: int
    flops_router: int
    flops_per_image: list[int]

    @property
    def mean_flops(self) -> float:
        return sum(self.flops_per_image) / max(len(self.flops_per_image), 1)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.flops_per_image)

        def quantile(q: float) -> int:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0

        return {
            "accuracy": round(self.accuracy, 6),
            "images": self.images,
            "label_counts": self.label_counts,
            "flops_static": self.flops_static,
            "flops_router": self.flops_router,
            "flops_mean": round(self.mean_flops),
            "flops_quantiles": {q: quantile(float(q)) for q in ("0", "0.25", "0.5", "0.75", "1")},
        }


def unit_costs(
    model: RoutedModel, input_size: tuple[int, int], in_channels: int = 3
) -> tuple[int, int, list[int]]:
    """fvcore FLOPs of the backbone running every unit, of the router, and of each label unit's gated body
    (0 for a unit that is never skipped)."""
    from ..analysis.flops_fvcore import count_flops, flops_by_module

    by_module = flops_by_module(model.backbone, input_size, in_channels=in_channels)
    gates = {m.index: path for path, m in model.backbone.named_modules() if isinstance(m, Gate)}
    costs = [by_module.get(f"{gates[k]}.body", 0) if k in gates else 0 for k in range(model.labels)]
    router = count_flops(model.router, input_size, in_channels=in_channels).flops
    return by_module[""], router, costs


def routing_stats(
    model: RoutedModel,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    device: torch.device | str = "cpu",
) -> RoutingStats:
    """Accuracy and FLOPs per image with the router's routing. The gates count the images each unit ran
    on; an image's FLOPs are the router's plus the backbone's minus the units its label skipped.

    Raises:
        RuntimeError: the gates ran other images than the labels say (a gate that does not skip).
    """
    static, router, costs = unit_costs(model, input_size, in_channels)
    correct = images = 0
    labels: list[int] = []
    model._routes.ran.zero_()
    with eval_mode(model), torch.no_grad():
        for x, y in batches:
            x = x.to(device)
            route = model.router(x).argmax(1)
            out = model(x, route)
            correct += int((out.argmax(1).cpu() == y).sum())
            images += len(y)
            labels.extend(route.cpu().tolist())
    gated = {m.index for m in model.backbone.modules() if isinstance(m, Gate)}
    expected = [sum(label >= k for label in labels) if k in gated else 0 for k in range(model.labels)]
    if model._routes.ran.tolist() != expected:
        raise RuntimeError(
            f"the gates ran {model._routes.ran.tolist()} images per unit, the labels say {expected}"
        )
    per_image = [router + static - sum(c for k, c in enumerate(costs) if k > label) for label in labels]
    counts = [labels.count(k) for k in range(model.labels)]
    return RoutingStats(correct / max(images, 1), images, counts, static, router, per_image)
