"""Logistic regression probes (paper 000 II-A, dissertation 2.4): how far each layer has solved the task.

Every conv and linear layer's output is adaptively average-pooled to at most 4x4, flattened, and a
multinomial logistic regression is fitted on the train split and scored on the test split. The dissertation
fits it with scikit-learn's SAGA for 100 epochs; here it is fitted in torch with L-BFGS on the whole
(standardised) feature matrix, which reaches the same convex optimum in seconds on a CPU for the layer widths
of these networks (a few thousand features). Layers are probed in groups that fit a memory budget, one pass
over the images per group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..analysis.modes import observing
from .saturation import borders_json, field_json, tracked_layers

if TYPE_CHECKING:
    from ..analysis.analyzer import Analysis

POOL = 4


@dataclass(frozen=True)
class LayerProbe:
    name: str
    type: str
    features: int
    train_accuracy: float
    test_accuracy: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "features": self.features,
            "train_accuracy": round(self.train_accuracy, 6),
            "test_accuracy": round(self.test_accuracy, 6),
        }


@dataclass(frozen=True)
class ProbeReport:
    layers: tuple[LayerProbe, ...]
    model_accuracy: float
    train_images: int
    test_images: int

    def to_json(self, analysis: Analysis | None = None) -> dict[str, Any]:
        """The JSON of ``rewriter probe --json``; with ``analysis``, each layer's receptive field too."""
        return {
            "model_test_accuracy": round(self.model_accuracy, 6),
            "train_images": self.train_images,
            "test_images": self.test_images,
            **borders_json(analysis),
            "layers": [{**layer.to_json(), **field_json(layer.name, analysis)} for layer in self.layers],
        }


def pooled(output: torch.Tensor) -> torch.Tensor:
    """A layer's output as probe features: feature maps pooled to at most 4x4, then flattened."""
    if output.dim() == 4:
        h, w = output.shape[-2:]
        output = F.adaptive_avg_pool2d(output, (min(POOL, h), min(POOL, w)))
    return output.flatten(1)


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: int,
    *,
    weight_decay: float = 1e-4,
    iterations: int = 100,
) -> tuple[float, float]:
    """Fit a multinomial logistic regression; return (train accuracy, test accuracy)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    linear = nn.Linear(train_x.shape[1], classes).double()
    train_x, test_x = train_x.double(), test_x.double()
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_acc = float((linear(train_x).argmax(1) == train_y).double().mean())
        test_acc = float((linear(test_x).argmax(1) == test_y).double().mean())
    return train_acc, test_acc


def _collect(
    model: nn.Module, names: list[str], loader: DataLoader, device: torch.device, show: Callable
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    modules = dict(model.named_modules())
    features: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    labels = []
    hooks = [
        (modules[name], lambda _m, _i, out, name=name: features[name].append(pooled(out).float().cpu()))
        for name in names
    ]
    with observing(model, hooks):
        for x, y in show(loader):
            model(x.to(device))
            labels.append(y)
    return {name: torch.cat(chunks) for name, chunks in features.items()}, torch.cat(labels)


def subset(dataset: Dataset, limit: int | None) -> Dataset:
    """``limit`` images of ``dataset`` drawn at random (seed 0), or all of them."""
    if limit is None or limit >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit]
    return Subset(dataset, order.tolist())


def run_probes(
    model: nn.Module,
    train: Dataset,
    test: Dataset,
    classes: int,
    *,
    max_samples: int | None = 2000,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    memory_mb: int = 768,
    progress: bool = False,
) -> ProbeReport:
    """Probe every conv and linear layer of ``model``; both splits are capped at ``max_samples`` images (the
    same random subset as ``subset(dataset, max_samples)``). Pass the training images without augmentation."""
    from tqdm import tqdm

    device = torch.device(device)
    train, test = subset(train, max_samples), subset(test, max_samples)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=False)
    test_loader = DataLoader(test, batch_size=batch_size, shuffle=False)
    layers = tracked_layers(model)
    sizes = _feature_sizes(model, train, device)
    groups, group, used = [], [], 0
    for name, _ in layers:
        need = sizes.get(name, 0) * (len(train) + len(test)) * 4 / 2**20
        if group and used + need > memory_mb:
            groups.append(group)
            group, used = [], 0
        group.append(name)
        used += need
    if group:
        groups.append(group)
    kinds = {name: type(module).__name__ for name, module in layers}
    results, model_correct = [], None
    bar = tqdm(total=len(layers), desc="probes", disable=not progress, leave=False)
    for names in groups:
        train_f, train_y = _collect(model, names, train_loader, device, lambda it: it)
        test_f, test_y = _collect(model, names, test_loader, device, lambda it: it)
        for name in names:
            train_acc, test_acc = fit_probe(train_f[name], train_y, test_f[name], test_y, classes)
            results.append(LayerProbe(name, kinds[name], train_f[name].shape[1], train_acc, test_acc))
            bar.update()
        if model_correct is None:
            model_correct = _model_accuracy(model, test_loader, device)
    bar.close()
    return ProbeReport(tuple(results), model_correct or 0.0, len(train), len(test))


def _feature_sizes(model: nn.Module, dataset: Dataset, device: torch.device) -> dict[str, int]:
    x = dataset[0][0][None].to(device)
    sizes: dict[str, int] = {}
    hooks = [
        (module, lambda _m, _i, out, name=name: sizes.update({name: sizes.get(name) or pooled(out).shape[1]}))
        for name, module in tracked_layers(model)
    ]
    with observing(model, hooks):
        model(x)
    return sizes


def _model_accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    from .training import evaluate

    return evaluate(model, loader, device)
