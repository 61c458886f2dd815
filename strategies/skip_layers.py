"""``skip-irrelevant-layers``: per image, run only the units up to the deepest one relevant to it (paper 004).

The paper's procedure, generalised from three same-size convolutions to any model with skippable units (see
``rewriter.lab.relevance``):

1. CNN 1: the model, trained (trained here first when the input model is not).
2. Relevance labels: for each label unit, the ``top`` images with the strongest activation of each of its
   first ``maps`` feature maps; an image's label is its deepest relevant unit.
3. CNN 2, the router: a small CNN trained to predict the label from the image (on the labelled images).
4. CNN 3: the same architecture, freshly initialised, whose skippable units are gated: an image labelled j
   runs the units up to j and skips the others, which then get no gradient from it. Trained on the labelled
   images with their labels (``train_on: labelled``, the paper) or on every training image, the unlabelled
   ones routed by the router (``all``, the default: the paper's labelled set is only maps x top images per
   unit).

The result is one module, router + backbone, that routes by the router at inference. Training uses
RMSprop at a constant learning rate as the paper does (Keras' defaults). The report gives the accuracy, the
router's accuracy, and FLOPs per image measured from the units that actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from rewriter.engine import Context, Edit, Plan, Strategy, fresh_copy, param
from rewriter.lab import (
    DataSource,
    LabelUnit,
    Relabelled,
    RelevanceError,
    RoutedModel,
    Router,
    TrainConfig,
    compute_relevance,
    dataset_labels,
    evaluate,
    gate_units,
    label_units,
    routing_stats,
    train,
)


@dataclass(frozen=True)
class LabelUnits:
    """The units a router label stands for, in execution order (label 0 is the first)."""

    units: tuple[LabelUnit, ...]


@dataclass(frozen=True)
class SkipIrrelevantLayers(Strategy):
    """Route each image through the units relevant to it and skip the rest (paper 004)."""

    name: ClassVar[str] = "skip-irrelevant-layers"
    payload_type: ClassVar[type] = LabelUnits

    maps: int = param(
        10, help="feature maps per unit whose strongest images are taken (paper: 10)", low=1, high=4096
    )
    top: int = param(10, help="strongest images per feature map (paper: 10)", low=1, high=100_000)
    router_width: int = param(
        16, help="filters of the router's first conv (its second has twice as many)", low=1, high=1024
    )
    epochs: int = param(
        20,
        help="epochs of each training: CNN 1 if untrained, the router, CNN 3 (paper: 20)",
        low=1,
        high=10_000,
    )
    lr: float = param(0.001, help="learning rate (RMSprop, constant, as paper 004)", low=1e-8, high=10)
    batch_size: int = param(64, help="images per batch", low=1, high=65_536)
    train_on: Literal["all", "labelled"] = param(
        "all", help="all (unlabelled images routed by the router) or labelled (paper 004)"
    )
    train_backbone: bool = param(
        True, help="train CNN 3 here; false leaves it to `rewriter train` or a study"
    )
    seed: int = param(0, help="seed of the initialisations and data order", low=0, high=2**32 - 1)

    def plan(self, model: nn.Module, context: Context) -> Plan:
        try:
            units = label_units(model, context.analysis)
        except RelevanceError as err:
            raise self.refuse(str(err)) from err
        if context.data is None and not context.replay:
            raise self.refuse("needs data to rank images and to train: give --data")
        edits = [
            Edit("gate", u.name, f"label unit {i}: runs for images labelled {i} or deeper", "skippable")
            for i, u in enumerate(units)
            if u.skippable
        ]
        edits.append(
            Edit(
                "add", "router", f"Router({len(units)} labels, width {self.router_width})", "paper 004 CNN 2"
            )
        )
        first = "" if units[0].skippable else " (never skipped)"
        residual = [u.name for u in units if u.residual]
        notes = (
            f"{len(units)} labels: 0 is '{units[0].name}'{first}, then the skippable units in execution order",
            *(["activations of residual units are what they add to their input: " + ", ".join(residual)]
              if residual else []),
        )  # fmt: skip
        payload = LabelUnits(tuple(units))
        return Plan(
            self.name, self.params(), tuple(edits), notes, payload, new_modules=("router", "backbone")
        )

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        units = list(plan.payload.units)
        torch.manual_seed(self.seed)
        router = Router(len(units), in_channels=context.in_channels, width=self.router_width)
        backbone, routes = gate_units(fresh_copy(model), units)  # CNN 3: the same net, new weights
        routed = RoutedModel(router, backbone, routes, [u.name for u in units])
        if context.replay:  # the weights are loaded next
            return routed
        data: DataSource = context.data
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="rmsprop",
                             gamma=1.0, seed=self.seed, evaluate_every_epoch=False)  # fmt: skip
        say = context.notes.append
        device = next(model.parameters()).device
        if not context.pretrained:
            base = train(model, data, config, device=device, progress=False)
            say(
                f"CNN 1 (the input model) trained for {self.epochs} epochs: test accuracy {base.test_accuracy:.1%}"
            )
        test_loader = DataLoader(data.test, batch_size=256)
        base_accuracy = evaluate(model, test_loader, device)
        relevance = {
            split: compute_relevance(model, context.analysis, DataLoader(dataset, batch_size=256), maps=self.maps,
                                     top=self.top, device=device)
            for split, dataset in (("train", data.train_plain), ("test", data.test))
        }  # fmt: skip
        labels = relevance["train"].labels
        say(
            "relevance labels of the training images: "
            + ", ".join(f"{u.name} {n}" for u, n in zip(units, relevance["train"].counts, strict=True))
            + f"; {int((labels < 0).sum())} of {len(labels)} unlabelled"
        )
        router_accuracy = self._train_router(router, data, relevance, config, device)
        say(
            f"router (CNN 2) test accuracy on the labelled test images: {router_accuracy:.1%} (paper 004: 62 %)"
        )
        for p in router.parameters():
            p.requires_grad_(False)
        if self.train_backbone:
            self._train_backbone(routed, data, labels, config, device)
        stats = routing_stats(
            routed, test_loader, context.input_size, in_channels=context.in_channels, device=device
        )
        say(
            f"CNN 3 test accuracy {stats.accuracy:.1%} (CNN 1: {base_accuracy:.1%}); FLOPs per image "
            f"{stats.mean_flops / 1e6:.2f} M mean, quantiles 0/25/50/75/100 % "
            + "/".join(f"{v / 1e6:.2f}" for v in stats.to_json()["flops_quantiles"].values())
            + f" M (router's {stats.flops_router / 1e6:.2f} M included), "
            f"without routing {stats.flops_static / 1e6:.2f} M; images per router label "
            + ", ".join(f"{k}: {n}" for k, n in enumerate(stats.label_counts))
        )
        return routed

    def _train_router(self, router, data: DataSource, relevance, config: TrainConfig, device) -> float:
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
        return train(router, source, config, device=device, progress=False).test_accuracy

    def _train_backbone(
        self, routed: RoutedModel, data: DataSource, labels, config: TrainConfig, device
    ) -> None:
        """CNN 3: the labelled images run up to their label; with ``all``, the others where the router says."""
        routes = labels.clone()
        if self.train_on == "all":
            loader = DataLoader(data.train_plain, batch_size=256)
            with torch.no_grad():
                predicted = torch.cat([routed.router.eval()(x.to(device)).argmax(1).cpu() for x, _ in loader])
            routes = torch.where(routes >= 0, routes, predicted)
        indices = [i for i in range(len(routes)) if routes[i] >= 0]
        classes = dataset_labels(data.train_plain)
        targets = [(classes[i], int(routes[i])) for i in indices]
        source = DataSource("routed", Relabelled(data.train, indices, targets), data.test, data.num_classes,
                            Relabelled(data.train_plain, indices, targets))  # fmt: skip

        def forward(net, batch, device):
            x, (y, route) = batch
            return net(x.to(device), route.to(device)), y.to(device)

        train(routed, source, config, device=device, progress=False, forward=forward)
