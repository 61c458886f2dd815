"""New widths for a network whose channels are coupled (``channels.ChannelCoupling``): each group scaled
and rounded the same way, which old channels each new one copies (largest L1 norm first), and what that
costs in parameters and multiply-adds. Planning numbers only; ``rewriter.engine`` rebuilds the modules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .channels import ChannelCoupling, ChannelGroups, Segment
from .graph import LayerGraph


def scaled(channels: int, factor: float, divisor: int) -> int:
    """``channels * factor`` rounded to the nearest multiple of ``divisor`` (halves up), at least ``divisor``
    and never more than 10 % below the exact value: the rounding of the MobileNet reference code
    (torchvision's ``_make_divisible``), so that widths agree with ``width_mult`` models."""
    value = channels * factor
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class Width:
    """The new width of one channel group, and how it was rounded (for the plan's message)."""

    old: int
    new: int
    step: int  # the new width is a multiple of this
    fixed: bool  # the model's input or class outputs: kept

    def reason(self, factor: float, divisor: int) -> str:
        if self.fixed:
            return "fixed: the model's input or output"
        exact = f"x {factor:.3f} = {self.old * factor:.4g}"
        if self.step == divisor:
            return f"{exact}, rounded to a multiple of {divisor}" if divisor > 1 else f"{exact}, rounded"
        if self.step == 1:
            return (
                f"{exact}, rounded to {self.new} (the divisor {divisor} would be more than the factor allows)"
            )
        return f"{exact}, rounded to a multiple of {self.step} (its {self.step} groups)"


def new_width(groups: ChannelGroups, group: int, factor: float, divisor: int) -> Width:
    """The new number of channels of ``group``: fixed ones keep theirs; the others a multiple of ``divisor``
    that grouped convolutions reading them can divide, or, where that is coarser than the new width itself, a
    multiple of their number of groups."""
    size, blocks = groups.size[groups.find(group)], groups.blocks_of(group)
    if groups.is_fixed(group):
        return Width(size, size, 1, True)
    step = math.lcm(divisor, blocks)
    if step > size * factor:  # too coarse for these groups: a multiple of the group count instead
        step = blocks
    return Width(size, scaled(size, factor, step), step, False)


def selection(
    model: nn.Module, coupling: ChannelCoupling, factor: float, divisor: int
) -> dict[int, list[int]]:
    """Per root group: the old channel each new channel copies (-1: a new channel).

    A shrinking group keeps the channels with the largest L1 norm, summed over the filters of every conv and
    linear layer that writes the group, the same number from each block a grouped conv reads (ties: the
    lower index); a growing group keeps every channel and adds new ones.
    """
    groups = coupling.groups
    importance: dict[int, torch.Tensor] = {}
    for path, name in coupling.callers.items():
        (group, channels, _), *_ = coupling.slot(name)
        root = groups.find(group)
        norms = model.get_submodule(path).weight.detach().abs().flatten(1).sum(1).double().cpu()
        importance[root] = importance.get(root, torch.zeros(channels, dtype=torch.float64)) + norms
    chosen: dict[int, list[int]] = {}
    for root in groups.roots:
        size, blocks = groups.size[root], groups.blocks_of(root)
        new = new_width(groups, root, factor, divisor).new
        score = importance.get(root, torch.arange(size, 0, -1, dtype=torch.float64))
        per, new_per = size // blocks, new // blocks
        picked: list[int] = []
        for block in range(blocks):
            if new_per >= per:
                picked += [*range(block * per, (block + 1) * per), *([-1] * (new_per - per))]
                continue
            part = score[block * per : (block + 1) * per].tolist()
            best = sorted(range(per), key=lambda i: (-part[i], i))[:new_per]
            picked += sorted(block * per + i for i in best)
        chosen[root] = picked
    return chosen


def flat_index(slot: list[Segment], groups: ChannelGroups, chosen: dict[int, list[int]]) -> list[int]:
    """Old feature index for each new feature of a segmented index space (-1 for new features)."""
    out, offset = [], 0
    for group, channels, repeat in slot:
        for old in chosen[groups.find(group)]:
            out.extend(
                [-1] * repeat if old < 0 else range(offset + old * repeat, offset + (old + 1) * repeat)
            )
        offset += channels * repeat
    return out


def resized_nodes(graph: LayerGraph, coupling: ChannelCoupling, kinds: tuple[type, ...]) -> list[str]:
    """Module paths of the nodes of ``kinds`` whose input and output channels are tracked."""
    slots = coupling.groups.slots
    out = []
    for node in graph:
        tracked = node.is_module and node.name in slots and node.inputs and node.inputs[0] in slots
        if tracked and isinstance(graph.graph_module.get_submodule(node.target), kinds):
            out.append(node.target)
    return out


def width_cost(
    model: nn.Module,
    graph: LayerGraph,
    coupling: ChannelCoupling,
    resized: list[str],
    factor: float,
    divisor: int,
) -> str:
    """The parameter and multiply-add change of the resized layers, counted from the new widths."""
    groups = coupling.groups

    def width(slot: list[Segment], new: bool) -> int:
        return sum((new_width(groups, g, factor, divisor).new if new else c) * r for g, c, r in slot)

    params, macs = [0, 0], [0, 0]
    for node in graph:
        if node.target not in resized:
            continue
        module = model.get_submodule(node.target)
        positions = math.prod(node.output_shape[2:]) if len(node.output_shape) > 2 else 1
        for i, new in enumerate((False, True)):
            c_out, c_in = width(coupling.slot(node.name), new), width(coupling.slot(node.inputs[0]), new)
            bias = c_out if getattr(module, "bias", None) is not None else 0
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                depthwise = isinstance(module, nn.Conv2d) and module.groups == module.in_channels > 1
                g = c_in if depthwise else getattr(module, "groups", 1)
                weights = c_out * (c_in // g) * math.prod(getattr(module, "kernel_size", (1,)))
                params[i] += weights + bias
                macs[i] += weights * positions
            else:
                params[i] += (c_out if getattr(module, "weight", None) is not None else 0) + bias
    total = sum(p.numel() for p in model.parameters())
    after = total + params[1] - params[0]
    return (
        f"params {total / 1e6:.2f} M -> {after / 1e6:.2f} M ({after / total - 1:+.1%}); conv and linear "
        f"multiply-adds {macs[0] / 1e6:.1f} M -> {macs[1] / 1e6:.1f} M ({macs[1] / max(macs[0], 1) - 1:+.1%})"
    )
