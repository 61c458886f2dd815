"""Paper 004's protocol, the training behind ``skip-irrelevant-layers``: CNN 1 (the model, trained),
relevance labels from its strongest activations, CNN 2 (the router) trained on them, and CNN 3 (the gated
backbone) trained to run each image up to its label; then accuracy and FLOPs per image on the test set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..analysis.analyzer import Analysis
from .batches import loader
from .data import DataSource, Relabelled, dataset_labels
from .relevance import Relevance, compute_relevance
from .routing import RoutedModel, RoutingStats, routing_stats
from .training import EpochRecord, TrainConfig, evaluate, train


@dataclass(frozen=True)
class SkipTraining:
    """How the three networks are trained (paper 004: RMSprop at a constant rate, 20 epochs each)."""

    config: TrainConfig
    maps: int = 10
    top: int = 10
    train_on: Literal["all", "labelled"] = "all"
    train_backbone: bool = True


def fit_routed_model(
    model: nn.Module,
    routed: RoutedModel,
    data: DataSource,
    analysis: Analysis,
    setup: SkipTraining,
    *,
    pretrained: bool,
    input_size: tuple[int, int],
    in_channels: int = 3,
    say: Callable[[str], None] = lambda _line: None,
    progress: Callable[[str], None] = lambda _line: None,
) -> RoutingStats:
    """Train CNN 1 (``model``, unless ``pretrained``), the router and the backbone of ``routed``; ``say``
    gets what was measured (for the report), ``progress`` a line per epoch. Returns the routed model's
    statistics on the test set, which are also kept on it (``routed.measured``)."""
    device = next(model.parameters()).device
    if not pretrained:
        base = _train(model, data, setup.config, device, "CNN 1 (the input model)", progress)
        say(f"CNN 1 (the input model) trained for {setup.config.epochs} epochs: test accuracy {base:.1%}")
    test_loader = loader(data.test, batch_size=256)
    base_accuracy = evaluate(model, test_loader, device)
    relevance = {
        split: compute_relevance(model, analysis, loader(dataset, batch_size=256), maps=setup.maps,
                                 top=setup.top, device=device)
        for split, dataset in (("train", data.train_plain), ("test", data.test))
    }  # fmt: skip
    labels = relevance["train"].labels
    say(
        "relevance labels of the training images: "
        + ", ".join(f"{u.name} {n}" for u, n in zip(relevance["train"].units, relevance["train"].counts,
                                                    strict=True))
        + f"; {int((labels < 0).sum())} of {len(labels)} unlabelled"
    )  # fmt: skip
    router_accuracy = _train_router(routed.router, data, relevance, setup.config, device, progress)
    say(f"router (CNN 2) test accuracy on the labelled test images: {router_accuracy:.1%} (paper 004: 62 %)")
    for p in routed.router.parameters():
        p.requires_grad_(False)
    if setup.train_backbone:
        _train_backbone(routed, data, labels, setup, device, progress)
    stats = routing_stats(routed, test_loader, input_size, in_channels=in_channels, device=device)
    routed.measured = stats
    say(_summary(stats, base_accuracy))
    return stats


def _summary(stats: RoutingStats, base_accuracy: float) -> str:
    quantiles = "/".join(f"{v / 1e6:.2f}" for v in stats.to_json()["flops_quantiles"].values())
    return (
        f"CNN 3 test accuracy {stats.accuracy:.1%} (CNN 1: {base_accuracy:.1%}); FLOPs per image "
        f"{stats.mean_flops / 1e6:.2f} M mean, quantiles 0/25/50/75/100 % {quantiles} M (router's "
        f"{stats.flops_router / 1e6:.2f} M included), without routing {stats.flops_static / 1e6:.2f} M; images "
        "per router label " + ", ".join(f"{k}: {n}" for k, n in enumerate(stats.label_counts))
    )


def _train(
    net: nn.Module, data: DataSource, config: TrainConfig, device, what: str, progress: Callable[[str], None],
    forward: Any = None,
) -> float:  # fmt: skip
    def report(record: EpochRecord) -> None:
        progress(f"{what}: epoch {record.epoch + 1}/{config.epochs}, loss {record.loss:.4f}")

    result = train(net, data, config, device=device, progress=False, on_epoch=report, forward=forward)
    return result.test_accuracy


def _train_router(
    router: nn.Module, data: DataSource, relevance: dict[str, Relevance], config: TrainConfig, device,
    progress: Callable[[str], None],
) -> float:  # fmt: skip
    """Fit the router on the labelled training images; its accuracy on the labelled test images."""
    train_labels, test_labels = relevance["train"].labels, relevance["test"].labels
    kept = [i for i in range(len(train_labels)) if train_labels[i] >= 0]
    tested = [i for i in range(len(test_labels)) if test_labels[i] >= 0]
    source = DataSource(
        "relevance labels",
        Relabelled(data.train, kept, [int(train_labels[i]) for i in kept]),
        Relabelled(data.test, tested, [int(test_labels[i]) for i in tested]),
        len(relevance["train"].units),
        Relabelled(data.train_plain, kept, [int(train_labels[i]) for i in kept]),
    )
    return _train(router, source, config, device, "router (CNN 2)", progress)


def _train_backbone(
    routed: RoutedModel, data: DataSource, labels: torch.Tensor, setup: SkipTraining, device,
    progress: Callable[[str], None],
) -> None:  # fmt: skip
    """CNN 3: the labelled images run up to their label; with ``all``, the others where the router says."""
    routes = labels.clone()
    if setup.train_on == "all":
        batches = loader(data.train_plain, batch_size=256)
        with torch.no_grad():
            predicted = torch.cat([routed.router.eval()(x.to(device)).argmax(1).cpu() for x, _ in batches])
        routes = torch.where(routes >= 0, routes, predicted)
    indices = [i for i in range(len(routes)) if routes[i] >= 0]
    classes = dataset_labels(data.train_plain)
    targets = [(classes[i], int(routes[i])) for i in indices]
    source = DataSource("routed", Relabelled(data.train, indices, targets), data.test, data.num_classes,
                        Relabelled(data.train_plain, indices, targets))  # fmt: skip

    def forward(net: nn.Module, batch: Sequence[Any], device: torch.device):
        x, (y, route) = batch
        return net(x.to(device), route.to(device)), y.to(device)

    _train(routed, source, setup.config, device, "backbone (CNN 3)", progress, forward=forward)
