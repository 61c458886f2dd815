"""``scale-width``: scale every conv and linear width by one factor so that mean saturation sits in 20-30 %.

Dissertation 11.3: "an average saturation s_mu of roughly 20% to 30% delivers the best performance", reached
"by adjusting the scaling of the network's width" uniformly, not per layer, and after the depth is fixed.
Model used for the factor: saturation varies inversely with width, so widths times f = s_mu / 0.25 bring
s_mu to the middle of the band. s_mu comes from a trained model and data (``--data``), or a saturation JSON,
or ``factor`` is given directly. A model whose test accuracy is at chance is refused: the saturation of an
untrained (or diverged) model says nothing about the width it needs.

The channel coupling (which channels must stay equal) and the new widths are the analysis layer's
(``rewriter.analysis.channel_coupling``, ``new_width``, ``selection``); this module plans and applies.
Weights are a warm start: a shrinking group keeps its channels with the largest L1 norm, a growing group
keeps every channel and adds new ones that existing filters read with zero weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from rewriter.analysis import (
    ChannelError,
    channel_coupling,
    flat_index,
    new_width,
    resized_nodes,
    selection,
    width_cost,
)
from rewriter.engine import (
    RESIZABLE,
    Context,
    Edit,
    Plan,
    Strategy,
    WidthScaling,
    param,
    resize_module,
    set_submodule,
)

_EVAL_IMAGES = 1024  # test images (a stratified sample) scored to tell a trained model from one at chance


@dataclass(frozen=True)
class WidthFactor:
    """The factor every width is scaled by."""

    factor: float


@dataclass(frozen=True)
class ScaleWidth(Strategy):
    """Scale all conv and linear widths by one factor to bring mean saturation into 20-30 % (dissertation 11.3)."""

    name: ClassVar[str] = "scale-width"
    payload_type: ClassVar[type] = WidthFactor
    search_order: ClassVar[int] = 60
    width_scaling: ClassVar[WidthScaling] = WidthScaling("factor", measured_from="saturation")

    factor: float | None = param(
        None, help="scale widths by this factor (default: from the measured saturation)", low=1 / 64, high=16
    )
    saturation: str | None = param(
        None, help="a saturation JSON (rewriter saturation --json) instead of --data"
    )
    low: float = param(0.20, help="lower end of the target band for s_mu", low=0, high=1)
    high: float = param(0.30, help="upper end of the target band for s_mu", low=0, high=1)
    divisor: int = param(8, help="round every width to a multiple of this", low=1, high=256)
    batches: int = param(
        20, help="batches of training data to measure saturation on (with --data)", low=1, high=100_000
    )
    untrained: bool = param(
        False, help="proceed with a model whose test accuracy is at chance (its saturation says little)"
    )

    def _mean_saturation(self, model: nn.Module, context: Context) -> tuple[float, str, tuple[str, ...]]:
        """s_mu, where it comes from, and the warnings to note."""
        if self.saturation is not None:
            path = Path(self.saturation)
            try:
                return float(json.loads(path.read_text())["s_mu"]), f"s_mu from {path.name}", ()
            except (OSError, ValueError, KeyError) as err:
                raise self.refuse(f"cannot read s_mu from {path}: {err}") from err
        if context.data is None:
            raise self.refuse(
                "needs the saturation of the trained model: give --data (or factor, or saturation)"
            )
        from rewriter.lab import compute_saturation, loader, sample

        warnings = self._check_trained(model, context)
        images = sample(context.data.train_plain, 64 * self.batches)  # every class, in proportion
        report = compute_saturation(model, loader(images, batch_size=64))
        source = f"s_mu measured on {report.samples} training images of {context.data.name}"
        return report.mean, source, warnings

    def _check_trained(self, model: nn.Module, context: Context) -> tuple[str, ...]:
        """Refuse (or, with ``untrained``, return the warning to note for) a model whose test accuracy cannot
        be told from chance: within three standard errors of 1 / classes on the images scored."""
        from rewriter.lab import check_chance

        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        check = check_chance(model, context.data, device, images=_EVAL_IMAGES)  # a stratified sample
        if not check.at_chance:
            return ()
        what = (
            f"{check.describe()}: the saturation of an untrained or diverged model says nothing about the width "
            "it needs"
        )
        if not self.untrained:
            raise self.refuse(f"{what}; train it first, or pass scale-width.untrained=true to proceed anyway")
        return (f"warning: {what}; proceeding as asked (untrained=true)",)

    def _factor(self, model: nn.Module, context: Context) -> tuple[float, tuple[str, ...], bool]:
        """The factor, how it was found (and any warning), and whether s_mu is already in the band (nothing
        to change)."""
        if self.factor is not None:
            return self.factor, (f"factor {self.factor} given",), False
        s_mu, source, warnings = self._mean_saturation(model, context)
        band = f"{self.low:.0%}-{self.high:.0%}"
        if self.low <= s_mu <= self.high:
            return 1.0, (f"{source}: {s_mu:.1%}, already in {band}: widths stay", *warnings), True
        factor = s_mu / ((self.low + self.high) / 2)
        return factor, (
            f"{source}: {s_mu:.1%}, outside {band}; with saturation proportional to 1/width, widths x "
            f"{factor:.3f} bring it to {(self.low + self.high) / 2:.0%}", *warnings,
        ), False  # fmt: skip

    def plan(self, model: nn.Module, context: Context) -> Plan:
        if not 0 < self.low < self.high <= 1:
            raise self.refuse(f"the target band must satisfy 0 < low < high <= 1, got {self.low}-{self.high}")
        factor, how, in_band = self._factor(model, context)
        if in_band:
            return Plan(self.name, {**self.params(), "factor": 1.0}, notes=how)
        if not 1 / 64 <= factor <= 16:
            raise self.refuse(f"a width factor of {factor:.3g} is outside 1/64-16")
        graph = context.analysis.graph
        try:
            coupling = channel_coupling(graph)
        except ChannelError as err:
            raise self.refuse(str(err)) from err
        untraced = [
            p
            for p, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and p not in coupling.callers
        ]
        if untraced:
            raise self.refuse(
                f"{len(untraced)} conv/linear layers are not run by the forward pass at evaluation "
                f"({', '.join(untraced[:3])}{', ...' if len(untraced) > 3 else ''}), e.g. auxiliary heads used "
                "only in training; their widths could not follow. Remove them first (truncate prunes them)"
            )
        held = [
            n.name for n in graph
            if n.is_module and n.name in coupling.groups.slots and n.target not in coupling.callers
            and not isinstance(m := model.get_submodule(n.target), RESIZABLE)
            and any(p.numel() > 1 for p in m.parameters())
        ]  # fmt: skip
        if held:
            raise self.refuse(
                f"'{held[0]}' ({graph[held[0]].type}) holds per-channel parameters that cannot be resized: only "
                "Conv2d, Linear, BatchNorm2d and GroupNorm modules are rebuilt at a new width"
            )
        edits = []
        for path, name in coupling.callers.items():
            module = model.get_submodule(path)
            width = new_width(coupling.groups, coupling.group_of(name), factor, self.divisor)
            detail = f"{type(module).__name__}: {width.old} -> {width.new} outputs"
            edits.append(Edit("resize", name, detail, width.reason(factor, self.divisor)))
        resized = resized_nodes(graph, coupling, RESIZABLE)
        cost = width_cost(model, graph, coupling, resized, factor, self.divisor)
        return Plan(
            self.name,
            {**self.params(), "factor": round(factor, 6)},
            tuple(edits),
            (how[0], cost, *how[1:]),
            WidthFactor(round(factor, 6)),
            new_modules=tuple(resized),
        )

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        graph = context.analysis.graph
        coupling = channel_coupling(graph)
        chosen = selection(model, coupling, plan.payload.factor, self.divisor)
        groups = coupling.groups
        for node in graph:
            if node.target in plan.new_modules:
                out_index = flat_index(coupling.slot(node.name), groups, chosen)
                in_index = flat_index(coupling.slot(node.inputs[0]), groups, chosen)
                set_submodule(
                    model, node.target, resize_module(model.get_submodule(node.target), out_index, in_index)
                )
        return model
