"""Logistic regression probes (paper 000 II-A, dissertation 2.4): how far each layer has solved the task.

Every conv and linear layer's output is adaptively average-pooled to at most 4x4, flattened, and a
multinomial logistic regression is fitted on the train split and scored on the test split. The dissertation
fits it with scikit-learn's SAGA for 100 epochs; here it is fitted in torch with L-BFGS (100 iterations) on
the whole standardised feature matrix, which reaches the same convex optimum in seconds on a CPU.

The features of every layer come from one forward pass per split (the model's test accuracy, and with
``saturation`` the layers' saturation, from the same passes); layers are taken in groups only when their
features would not fit the memory budget. A layer with more features than training images is fitted on a
compact representation that gives the same probe: its L2-regularised optimum lies in the span of the
training images, so the regression is fitted on the coordinates of the images in that span (from the
eigendecomposition of their Gram matrix), at most one per training image. That pays from about twice as
many features as images (below, the eigendecomposition costs more than it saves).

L-BFGS runs on one thread: its two-loop recursion is thousands of small vector operations per fit, and
splitting each over the cores costs more in synchronisation than it gains (13x slower measured on two
cores shared with other jobs; see benchmarks/probe_speed.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..analysis.modes import observing
from .batches import loader
from .sampling import sample
from .saturation import SaturationReport, borders_json, field_json, saturation_taps, tracked_layers

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
    saturation: SaturationReport | None = None  # on the probes' training images, when asked for

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


def compact(
    train_x: torch.Tensor, test_x: torch.Tensor, *, tolerance: float = 1e-7
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of both splits in the span of the training rows, in float64: ``Z = U sqrt(L)`` from the
    Gram matrix ``X X^T = U L U^T``, and ``X_test X^T U / sqrt(L)`` for the test rows. A linear model on Z with
    an L2 penalty is the linear model on X restricted to that span, where its optimum lies, with the same
    penalty (the map is orthonormal); directions with eigenvalues below ``tolerance`` times the largest are
    dropped (the precision of the float32 Gram matrix)."""
    eigenvalues, vectors = torch.linalg.eigh((train_x @ train_x.T).double())
    keep = eigenvalues > tolerance * eigenvalues.max().clamp(min=1e-300)
    eigenvalues, vectors = eigenvalues[keep], vectors[:, keep]
    roots = eigenvalues.sqrt()
    return vectors * roots, (test_x @ train_x.T).double() @ (vectors / roots)


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: int,
    *,
    weight_decay: float = 1e-4,
    iterations: int = 100,
    reduce: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """Fit a multinomial logistic regression (from zero weights); return (train accuracy, test accuracy).
    With ``reduce``, more than twice as many features as training rows are fitted on ``compact``
    coordinates; ``on_step`` is told the number of L-BFGS iterations done after each evaluation."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    if reduce and train_x.shape[1] > 2 * train_x.shape[0]:
        train_x, test_x = compact(train_x, test_x)
    train_x, test_x = train_x.double(), test_x.double()
    linear = nn.Linear(train_x.shape[1], classes).double()
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        if on_step is not None:
            on_step(optimizer.state[linear.weight].get("n_iter", 0))
        return loss

    with _one_thread():
        optimizer.step(closure)
    with torch.no_grad():
        train_acc = float((linear(train_x).argmax(1) == train_y).double().mean())
        test_acc = float((linear(test_x).argmax(1) == test_y).double().mean())
    return train_acc, test_acc


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Pass:
    """What one pass over a split collected: pooled features per layer, labels, correct predictions."""

    features: dict[str, list[torch.Tensor]]
    labels: list[torch.Tensor]
    correct: int = 0


def _collect(model: nn.Module, names: list[str], loader: DataLoader, device: torch.device, *,
             taps: dict[str, Callable] | None = None, desc: str = "", show: bool = False) -> _Pass:  # fmt: skip
    """One forward pass over ``loader``: the pooled outputs of ``names`` (float32, on the CPU), the labels,
    the model's correct answers, and every output handed to ``taps`` (layer -> callable) as well."""
    from .._progress import progress_bar

    modules = dict(model.named_modules())
    seen = _Pass({name: [] for name in names}, [])

    def hook(name: str) -> Callable:
        def record(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            if name in seen.features:
                seen.features[name].append(pooled(out).float().cpu())
            if taps and name in taps:
                taps[name](out)

        return record

    hooked = sorted(set(names) | set(taps or {}), key=list(modules).index)
    with observing(model, [(modules[name], hook(name)) for name in hooked]):
        for x, y in progress_bar(loader, desc=desc, show=show, leave=False, unit="batch"):
            out, y = model(x.to(device)), y.cpu()
            seen.labels.append(y)
            seen.correct += int((out.argmax(1).cpu() == y).sum()) if out.dim() == 2 else 0
    return seen


def _groups(names: list[str], sizes: dict[str, int], images: int, memory_mb: int) -> list[list[str]]:
    """Consecutive layers whose pooled features for ``images`` fit ``memory_mb`` together (one pass each)."""
    groups, group, used = [], [], 0.0
    for name in names:
        need = sizes.get(name, 0) * images * 4 / 2**20
        if group and used + need > memory_mb:
            groups.append(group)
            group, used = [], 0.0
        group.append(name)
        used += need
    return [*groups, group] if group else groups


def run_probes(
    model: nn.Module,
    train: Dataset,
    test: Dataset,
    classes: int,
    *,
    max_samples: int | None = 2000,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    memory_mb: int = 2048,
    progress: bool = False,
    saturation: bool = False,
    reduce: bool = True,
) -> ProbeReport:
    """Probe every conv and linear layer of ``model``; both splits are capped at ``max_samples`` images (the
    same stratified sample, seed 0, as ``sampling.sample(dataset, max_samples)``: every class in proportion).
    Pass the training images without augmentation.
    With ``saturation``, the layers' saturation on the same training images comes from the same passes."""
    from .._progress import progress_bar
    from .training import resolve_device

    device = resolve_device(device)
    train, test = sample(train, max_samples), sample(test, max_samples)
    loaders = [loader(split, batch_size=batch_size, device=device) for split in (train, test)]
    layers = tracked_layers(model)
    groups = _groups(
        [n for n, _ in layers], _feature_sizes(model, train, device), len(train) + len(test), memory_mb
    )
    taps, finish = saturation_taps(model, device=device) if saturation else ({}, None)
    kinds = {name: type(module).__name__ for name, module in layers}
    results, correct = [], 0
    bar = progress_bar(total=len(layers), desc="probes", show=progress, unit="layer")
    for i, names in enumerate(groups):
        part = f" ({i + 1}/{len(groups)})" if len(groups) > 1 else ""
        fitted = _collect(model, names, loaders[0], device, taps=taps if i == 0 else None,
                          desc=f"features of the training images{part}", show=progress)  # fmt: skip
        scored = _collect(
            model, names, loaders[1], device, desc=f"features of the test images{part}", show=progress
        )
        correct = correct or scored.correct
        for name in names:
            results.append(
                _fit_layer(name, kinds[name], fitted, scored, classes, reduce, bar if progress else None)
            )
            bar.update()
    bar.close()
    report = finish(len(train)) if finish is not None else None
    return ProbeReport(tuple(results), correct / max(len(test), 1), len(train), len(test), report)


def _fit_layer(
    name: str, kind: str, fitted: _Pass, scored: _Pass, classes: int, reduce: bool, bar
) -> LayerProbe:
    train_x, test_x = torch.cat(fitted.features.pop(name)), torch.cat(scored.features.pop(name))
    if bar is not None:
        bar.set_postfix_str(f"{name}: fitting")

    def step(done: int) -> None:
        if bar is not None:
            bar.set_postfix_str(f"{name}: L-BFGS iteration {done}/100")

    train_acc, test_acc = fit_probe(train_x, torch.cat(fitted.labels), test_x, torch.cat(scored.labels), classes,
                                    reduce=reduce, on_step=step)  # fmt: skip
    return LayerProbe(name, kind, train_x.shape[1], train_acc, test_acc)


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
