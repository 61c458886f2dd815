"""Per-image layer relevance (paper 004, Gadepally et al., section 3): which units matter to which images.

For every *label unit* the first ``maps`` feature maps are taken and, for each, the ``top`` images with the
strongest activation (mean absolute value over the map). An image is relevant to a unit if it is among the
strongest of one of its maps; its label is the deepest unit it is relevant to (ties go to the deeper one, as
in the paper). Images among the strongest nowhere stay unlabelled (the paper trains only on labelled ones).

Label units generalise the paper's three convolutions: unit 0 is the network's first conv or block (never
skipped: the paper's conv 1, label 0 means "skip every skippable unit"), then every *skippable* unit in
execution order, a layer or block whose output has its input's shape (a residual block inside a stage, a
same-width stride-1 conv with its norm and activation in a plain net). The activation of a plain unit is its
output, as in the paper; a residual unit's is what it adds to its input (output - input), so that a block
that passes its input through untouched is relevant to no image. A map that is zero or constant over all
images ranks nothing and is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .._errors import RewriterError
from ..analysis.analyzer import Analysis
from ..analysis.graph import LayerGraph
from ..analysis.modes import observing
from ..analysis.stages import Unit, find_units


class RelevanceError(RewriterError, ValueError):
    """The model has no units that could be skipped, or too few images for the ranking asked for."""


@dataclass(frozen=True)
class LabelUnit:
    """A unit whose strongest activations are ranked: its modules, and how its activation is read."""

    name: str
    modules: tuple[str, ...]  # consecutive modules of one container (or one block module)
    skippable: bool
    residual: bool  # the activation is output - input
    first: int = 0  # execution index of its first op in the traced graph


def _is_residual(graph: LayerGraph, unit: Unit) -> bool:
    """Whether an addition inside the unit adds the tensor that enters the unit (an identity skip)."""
    inside = set(unit.nodes)
    entering = {p for p in graph[unit.nodes[0]].inputs if p not in inside}
    return any(graph[n].type in ("add", "iadd") and entering & set(graph[n].inputs) for n in unit.nodes)


def label_units(model: nn.Module, analysis: Analysis) -> list[LabelUnit]:
    """The first conv or block, then every skippable unit, in execution order.

    Raises:
        RelevanceError: no unit keeps its input's shape, so there is nothing to skip.
    """
    graph = analysis.graph
    units = [u for u in find_units(model, graph) if u.kind in ("conv", "block") and u.modules]
    calls = _call_counts(model, {m for u in units for m in u.modules}, graph[graph.input_name].output_shape)
    # a module that runs more than once cannot be gated for one of its calls, nor hooked for one of them
    skippable = [
        u for u in units
        if u.repeatable and _consecutive(model, u.modules) and all(calls[m] == 1 for m in u.modules)
    ]  # fmt: skip
    if not skippable:
        raise RelevanceError(
            "no unit of this model keeps its input's shape (a residual block inside a stage, a same-width "
            "stride-1 conv) and runs its modules once, so no layer can be skipped per image"
        )
    first = units[0]
    if first not in skippable:  # read before its shared trailing modules (a ReLU used everywhere)
        kept = tuple(m for m in first.modules if calls[m] == 1)
        if not kept:
            raise RelevanceError(
                f"the first unit '{first.name}' has no module that runs once; it cannot be read"
            )
        first = replace(first, modules=kept)
    chosen = ([] if first in skippable else [first]) + skippable
    return [LabelUnit(u.name, u.modules, u in skippable, _is_residual(graph, u), u.first) for u in chosen]


def _call_counts(model: nn.Module, paths: set[str], input_shape: tuple[int, ...] | None) -> Counter:
    """How often each module at ``paths`` runs in one forward pass (on zeros of the traced input's shape);
    a module registered under two paths counts the calls of both."""
    counts: Counter = Counter()
    modules = {path: model.get_submodule(path) for path in paths}
    param = next(model.parameters(), None)
    x = torch.zeros(
        (1, *input_shape[1:]) if input_shape else (1, 3, 32, 32),
        device=param.device if param is not None else "cpu",
    )
    with observing(model, [(m, lambda *_, path=path: counts.update([path])) for path, m in modules.items()]):
        model(x)
    for path, module in modules.items():  # one module under two names: every name ran it
        aliases = [n for n, m in model.named_modules(remove_duplicate=False) if m is module]
        if len(aliases) > 1:
            counts[path] = max(counts[path], 2)
    return counts


def _consecutive(model: nn.Module, modules: tuple[str, ...]) -> bool:
    """Whether the modules are one module, or neighbours in one nn.Sequential (so that a gate can wrap them;
    in a module with its own forward, the neighbours are called by name and cannot be merged)."""
    if len(modules) == 1:
        return True
    parents = {m.rpartition(".")[0] for m in modules}
    if len(parents) != 1:
        return False
    parent = parents.pop()
    container = model.get_submodule(parent) if parent else model
    if not isinstance(container, nn.Sequential):
        return False
    names = list(container._modules)
    positions = [names.index(m.rpartition(".")[2]) for m in modules]
    return positions == list(range(positions[0], positions[0] + len(positions)))


def unit_strengths(
    model: nn.Module,
    units: list[LabelUnit],
    batches: Iterable[tuple[torch.Tensor, Any]],
    *,
    maps: int = 10,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``[images, units, maps]``: mean absolute activation of each unit's first ``maps`` feature maps."""
    modules = dict(model.named_modules())
    current: dict[str, torch.Tensor] = {}
    rows: list[torch.Tensor] = []
    hooks, pre_hooks = [], []

    for index, unit in enumerate(units):

        def enter(_m, inputs, index=index):
            current[f"in{index}"] = inputs[0]

        def leave(_m, _i, output, index=index, unit=unit):
            value = output - current.pop(f"in{index}") if unit.residual else output
            current[f"out{index}"] = value[:, :maps].abs().flatten(2).mean(2)

        pre_hooks.append((modules[unit.modules[0]], enter))
        hooks.append((modules[unit.modules[-1]], leave))
    with observing(model, hooks, pre_hooks):
        for x, _ in batches:
            current.clear()
            model(x.to(device))
            per_unit = [current[f"out{i}"].float().cpu() for i in range(len(units))]
            width = max(p.shape[1] for p in per_unit)
            rows.append(torch.stack([nn.functional.pad(p, (0, width - p.shape[1])) for p in per_unit], 1))
    return torch.cat(rows)


@dataclass(frozen=True)
class Relevance:
    """Labels of the images of one split, and how many images each unit is relevant to."""

    units: tuple[LabelUnit, ...]
    labels: torch.Tensor  # [images], the deepest relevant unit's index, -1 for unlabelled images
    relevant: torch.Tensor  # [units, images] bool: the image is among the strongest of one of the unit's maps
    maps: int
    top: int

    @property
    def counts(self) -> list[int]:
        """Images labelled with each unit."""
        return [int((self.labels == i).sum()) for i in range(len(self.units))]

    @property
    def labelled(self) -> int:
        return int((self.labels >= 0).sum())

    def candidates(self, share: float = 0.02) -> list[str]:
        """Skippable units labelling fewer than ``share`` of the labelled images: candidates for removal."""
        limit = share * max(self.labelled, 1)
        return [u.name for u, n in zip(self.units, self.counts, strict=True) if u.skippable and n < limit]

    def to_json(self, analysis: Analysis | None = None) -> dict[str, Any]:
        return {
            "maps": self.maps,
            "top": self.top,
            "images": int(self.labels.numel()),
            "labelled": self.labelled,
            "units": [
                {
                    "label": i,
                    "name": u.name,
                    "skippable": u.skippable,
                    "residual": u.residual,
                    "relevant_images": int(self.relevant[i].sum()),
                    "labelled_images": n,
                }
                for i, (u, n) in enumerate(zip(self.units, self.counts, strict=True))
            ],
            "removal_candidates": self.candidates(),
            "border_layer_min": analysis.border_layer_min if analysis else None,
            "labels": self.labels.tolist(),
        }


def relevance_from_strengths(
    strengths: torch.Tensor, units: list[LabelUnit], *, maps: int, top: int
) -> Relevance:
    """Rank the images per unit and map; label each image with its deepest relevant unit."""
    images = strengths.shape[0]
    if top > images:
        raise RelevanceError(f"cannot take the {top} strongest of {images} images; lower top or add images")
    relevant = torch.zeros(len(units), images, dtype=torch.bool)
    for u in range(len(units)):
        for m in range(min(maps, strengths.shape[2])):
            values = strengths[:, u, m]
            if float(values.max()) <= 0 or float(values.max()) == float(values.min()):
                continue  # a dead or constant map ranks nothing
            strongest = torch.topk(values, top).indices
            relevant[u, strongest[values[strongest] > 0]] = (
                True  # an image that does not activate it at all is not
            )
    depth = torch.arange(len(units)).view(-1, 1).expand_as(relevant)
    labels = torch.where(relevant, depth, torch.full_like(depth, -1)).max(0).values
    return Relevance(tuple(units), labels, relevant, maps, top)


def compute_relevance(
    model: nn.Module,
    analysis: Analysis,
    batches: Iterable[tuple[torch.Tensor, Any]],
    *,
    maps: int = 10,
    top: int = 10,
    device: torch.device | str = "cpu",
) -> Relevance:
    """Relevance labels for the images of ``batches`` (iterated once, in order)."""
    units = label_units(model, analysis)
    strengths = unit_strengths(model, units, batches, maps=maps, device=device)
    return relevance_from_strengths(strengths, units, maps=maps, top=top)
