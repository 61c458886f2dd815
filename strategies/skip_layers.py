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

from rewriter.engine import Applied, Context, Edit, Plan, Strategy, fresh_copy, param
from rewriter.lab import (
    LabelUnit,
    RelevanceError,
    RoutedModel,
    Router,
    SkipTraining,
    TrainConfig,
    fit_routed_model,
    gate_units,
    label_units,
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
    export_refusal: ClassVar[str] = RoutedModel.export_refusal
    search_order: ClassVar[int] = 70

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

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> Applied:
        """Build the routed model and, unless replaying, train it; the training's accuracies are the notes."""
        units = list(plan.payload.units)
        torch.manual_seed(self.seed)
        router = Router(len(units), in_channels=context.in_channels, width=self.router_width)
        backbone, routes = gate_units(fresh_copy(model), units)  # CNN 3: the same net, new weights
        routed = RoutedModel(router, backbone, routes, [u.name for u in units])
        if context.replay:  # the weights are loaded next
            return Applied(routed)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="rmsprop",
                             gamma=1.0, seed=self.seed, test_every=0)  # fmt: skip
        setup = SkipTraining(config, self.maps, self.top, self.train_on, self.train_backbone)
        measured: list[str] = []
        fit_routed_model(
            model, routed, context.data, context.analysis, setup, pretrained=context.pretrained,
            input_size=context.input_size, in_channels=context.in_channels, say=measured.append,
            progress=context.progress,
        )  # fmt: skip
        return Applied(routed, tuple(measured))
