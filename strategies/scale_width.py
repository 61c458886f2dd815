"""``scale-width``: scale every conv and linear width by one factor so that mean saturation sits in 20-30 %.

Dissertation 11.3: "an average saturation s_mu of roughly 20% to 30% delivers the best performance", reached
"by adjusting the scaling of the network's width" uniformly, not per layer, and after the depth is fixed.
Model used for the factor: saturation varies inversely with width, so widths times f = s_mu / 0.25 bring
s_mu to the middle of the band. s_mu comes from a trained model and data (``--data``), or a saturation JSON,
or ``factor`` is given directly.

Channels that must stay equal stay equal: the graph is read into channel groups (a residual addition, a
batch norm, a depthwise convolution, an activation share one group; a concatenation or a flatten lays groups
side by side), every group is scaled and rounded the same way (a multiple of 8 by default), and the model's
input channels and class outputs keep their sizes. Weights are a warm start: a shrinking group keeps its
channels with the largest L1 norm (summed over the filters that write it), a growing group keeps every
channel and adds new ones, initialised afresh, which existing filters read with zero weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from rewriter.analysis import Analysis, LayerNode
from rewriter.engine import Context, Edit, Plan, Strategy, param, set_submodule

Segment = tuple[int, int, int]  # (group, channels, repeat): a run of a group's channels, each repeated
_KEEPS_CHANNELS = (
    nn.BatchNorm2d,
    nn.BatchNorm1d,
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
)
_ELEMENTWISE = {
    "add",
    "iadd",
    "mul",
    "imul",
    "sub",
    "truediv",
    "div",
    "relu",
    "relu6",
    "sigmoid",
    "hardsigmoid",
    "hardswish",
    "silu",
    "gelu",
    "tanh",
    "dropout",
    "stochastic_depth",
    "contiguous",
    "clone",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "max_pool2d",
    "mean",
    "sum",
    "amax",
    "interpolate",
}


class ChannelGroups:
    """Union-find over channel groups, and each node's channel index space as a list of segments."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: set[int] = set()
        self.blocks: dict[int, int] = {}  # group -> number of equal blocks it must keep (grouped convs)
        self.slots: dict[str, list[Segment]] = {}

    def new(self, channels: int, *, fixed: bool = False) -> list[Segment]:
        self.parent.append(len(self.parent))
        self.size.append(channels)
        if fixed or channels == 1:
            self.fixed.add(len(self.parent) - 1)
        return [(len(self.parent) - 1, channels, 1)]

    def find(self, group: int) -> int:
        while self.parent[group] != group:
            self.parent[group] = self.parent[self.parent[group]]
            group = self.parent[group]
        return group

    def union(self, a: list[Segment], b: list[Segment], where: str) -> list[Segment]:
        if [(c, r) for _, c, r in a] != [(c, r) for _, c, r in b]:
            raise ValueError(f"'{where}' joins tensors whose channels are laid out differently")
        for (ga, _, _), (gb, _, _) in zip(a, b, strict=True):
            ra, rb = self.find(ga), self.find(gb)
            if ra != rb:
                self.parent[rb] = ra
                if rb in self.fixed:
                    self.fixed.add(ra)
                if rb in self.blocks:
                    self.split(ra, self.blocks.pop(rb))
        return a

    def split(self, group: int, blocks: int) -> None:
        """Channels of ``group`` form ``blocks`` equal blocks that must stay equal (a grouped conv reads them)."""
        root = self.find(group)
        self.blocks[root] = math.lcm(self.blocks.get(root, 1), blocks)

    def blocks_of(self, group: int) -> int:
        return self.blocks.get(self.find(group), 1)

    def is_fixed(self, group: int) -> bool:
        return self.find(group) in {self.find(g) for g in self.fixed}


def _channels(node: LayerNode) -> int | None:
    shape = node.output_shape
    return shape[1] if shape and len(shape) in (2, 4) else None


def channel_groups(model: nn.Module, analysis: Analysis) -> tuple[ChannelGroups, dict[str, str]]:
    """Read the graph into channel groups; also return, per conv/linear module, the node that calls it.

    Raises:
        ValueError: an op whose effect on channels is not known here (a channel split, a shuffle, a reshape
            that is not a flatten), with its name.
    """
    graph = analysis.graph
    groups = ChannelGroups()
    callers: dict[str, str] = {}
    fx_nodes = graph.fx_names
    for node in graph:
        slot = _slot(model, graph, groups, node, fx_nodes)
        if slot is not None:
            groups.slots[node.name] = slot
        if node.is_module and isinstance(model.get_submodule(node.target), (nn.Conv2d, nn.Linear)):
            if node.target in callers:
                raise ValueError(
                    f"module '{node.target}' runs twice; its width cannot be changed for one call only"
                )
            callers[node.target] = node.name
    output = graph[graph.output_name]
    for name in output.inputs:
        for group, _, _ in groups.slots.get(name, []):
            groups.fixed.add(group)  # the class scores keep their number
    return groups, callers


def _slot(model, graph, groups: ChannelGroups, node: LayerNode, fx_nodes) -> list[Segment] | None:
    inputs = [groups.slots[i] for i in node.inputs if i in groups.slots]
    if node.op == "placeholder":
        return groups.new(node.output_shape[1], fixed=True)
    if node.op == "output":
        return None
    if node.is_module:
        module = model.get_submodule(node.target)
        if isinstance(module, nn.Conv2d):
            if module.groups == 1:
                return groups.new(module.out_channels)
            if module.groups == module.in_channels == module.out_channels:
                return inputs[0]  # depthwise: one channel in, the same channel out
            if module.groups == module.in_channels or len(inputs[0]) != 1:
                raise ValueError(
                    f"grouped convolution '{node.name}' ({module.groups} groups, {module.in_channels} -> "
                    f"{module.out_channels} channels): only depthwise convolutions and grouped ones on a "
                    "single tensor with a fixed number of groups are supported"
                )
            groups.split(inputs[0][0][0], module.groups)  # cardinality stays; each group's width scales
            slot = groups.new(module.out_channels)
            groups.split(slot[0][0], module.groups)
            return slot
        if isinstance(module, nn.Linear):
            return groups.new(module.out_features)
        if isinstance(module, nn.GroupNorm):
            groups.split(inputs[0][0][0], module.num_groups)
            return inputs[0]
        if isinstance(module, _KEEPS_CHANNELS):
            return inputs[0]
        if isinstance(module, nn.Flatten):
            return _flattened(node, inputs[0])
        raise ValueError(f"'{node.name}' ({type(module).__name__}): its effect on channels is not known")
    name = node.type
    if name in _ELEMENTWISE:
        full = [
            slot
            for i, slot in zip(node.inputs, inputs, strict=False)
            if _channels(graph[i]) == _channels(node)
        ]
        slot = full[0]
        for other in full[1:]:
            groups.union(slot, other, node.name)
        return slot
    if name in ("cat", "concat"):
        dim = (
            fx_nodes[node.name].meta.get("arg_values", ((None, 1), {}))[0][1]
            if len(fx_nodes[node.name].args) > 1
            else 1
        )
        if dim not in (1, -3):
            raise ValueError(f"'{node.name}' concatenates along dim {dim}, not the channels")
        return [segment for slot in inputs for segment in slot]
    if name in ("flatten", "view", "reshape") and node.output_shape and len(node.output_shape) == 2:
        return _flattened(node, inputs[0])
    raise ValueError(f"'{node.name}' ({name}): its effect on channels is not known to scale-width")


def _flattened(node: LayerNode, slot: list[Segment]) -> list[Segment]:
    shape = node.input_shape
    positions = math.prod(shape[2:]) if shape and len(shape) > 2 else 1
    return [(g, c, r * positions) for g, c, r in slot]


def _resizable(model: nn.Module, node: LayerNode, groups: ChannelGroups) -> bool:
    """Conv, linear and batch-norm modules whose channels are tracked: the ones rebuilt at the new width."""
    if (
        not node.is_module
        or node.name not in groups.slots
        or not node.inputs
        or node.inputs[0] not in groups.slots
    ):
        return False
    return isinstance(model.get_submodule(node.target), (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.GroupNorm))


def scaled(channels: int, factor: float, divisor: int) -> int:
    """``channels * factor`` rounded to the nearest multiple of ``divisor`` (halves up), at least ``divisor``
    and never more than 10 % below the exact value: the rounding of the MobileNet reference code
    (torchvision's ``_make_divisible``), so that widths agree with ``width_mult`` models."""
    value = channels * factor
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def new_width(groups: ChannelGroups, group: int, factor: float, divisor: int) -> int:
    """The new number of channels of ``group``: fixed ones keep theirs; the others a multiple of ``divisor``
    that grouped convolutions reading them can divide, or, where that is coarser than the new width itself, a
    multiple of their number of groups."""
    size, blocks = groups.size[groups.find(group)], groups.blocks_of(group)
    if groups.is_fixed(group):
        return size
    step = math.lcm(divisor, blocks)
    if step > size * factor:  # too coarse for these groups: a multiple of the group count instead
        step = blocks
    return scaled(size, factor, step)


def _selection(
    model: nn.Module, groups: ChannelGroups, callers: dict[str, str], factor: float, divisor: int
) -> dict[int, list[int]]:
    """Per root group: the old channel each new channel copies (-1: a new channel)."""
    importance: dict[int, torch.Tensor] = {}
    for path, name in callers.items():
        module = model.get_submodule(path)
        (group, channels, _), *_ = groups.slots[name]
        root = groups.find(group)
        norms = module.weight.detach().abs().flatten(1).sum(1).double().cpu()
        importance[root] = importance.get(root, torch.zeros(channels, dtype=torch.float64)) + norms
    roots = {groups.find(g) for g in range(len(groups.parent))}
    selection = {}
    for root in roots:
        size, new, blocks = (
            groups.size[root],
            new_width(groups, root, factor, divisor),
            groups.blocks_of(root),
        )
        score = importance.get(root, torch.arange(size, 0, -1, dtype=torch.float64))
        per, new_per = size // blocks, new // blocks
        chosen = []
        for block in range(blocks):  # the same number of channels from every block
            if new_per >= per:
                chosen += [*range(block * per, (block + 1) * per), *([-1] * (new_per - per))]
            else:
                top = torch.topk(score[block * per : (block + 1) * per], new_per).indices
                chosen += sorted((top + block * per).tolist())
        selection[root] = chosen
    return selection


def _flat_index(slot: list[Segment], groups: ChannelGroups, selection: dict[int, list[int]]) -> list[int]:
    """Old feature index for each new feature of a segmented index space (-1 for new features)."""
    out, offset = [], 0
    for group, channels, repeat in slot:
        for old in selection[groups.find(group)]:
            out.extend(
                [-1] * repeat if old < 0 else range(offset + old * repeat, offset + old * repeat + repeat)
            )
        offset += channels * repeat
    return out


def _resize(
    old: torch.Tensor, rows: list[int], columns: list[int] | None, init: torch.Tensor
) -> torch.Tensor:
    """A parameter of a new shape from an old one: ``rows`` (and ``columns``, dim 1) name the old slice each
    new one copies (-1: a new one). New rows keep ``init``; old rows read new columns with zero weight."""
    row_index = torch.tensor([max(r, 0) for r in rows])
    row_kept = torch.tensor([r >= 0 for r in rows])
    taken = old.detach().index_select(0, row_index)
    if columns is not None:
        column_index = torch.tensor([max(c, 0) for c in columns])
        column_kept = torch.tensor([c >= 0 for c in columns]).view(1, -1, *([1] * (old.dim() - 2)))
        taken = taken.index_select(1, column_index) * column_kept
    mask = row_kept.view(-1, *([1] * (old.dim() - 1)))
    return torch.where(mask, taken.to(init), init)


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

    def _mean_saturation(self, model: nn.Module, context: Context) -> tuple[float, str]:
        if self.saturation is not None:
            path = Path(self.saturation)
            try:
                return float(json.loads(path.read_text())["s_mu"]), f"s_mu from {path.name}"
            except (OSError, ValueError, KeyError) as err:
                raise self.refuse(f"cannot read s_mu from {path}: {err}") from err
        if context.data is None:
            raise self.refuse(
                "needs the saturation of the trained model: give --data (or factor, or saturation)"
            )
        from torch.utils.data import DataLoader

        from rewriter.lab import compute_saturation

        loader = DataLoader(
            context.data.train_plain, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        batches = (batch for i, batch in enumerate(loader) if i < self.batches)
        report = compute_saturation(model, batches)
        return report.mean, f"s_mu measured on {report.samples} training images of {context.data.name}"

    def plan(self, model: nn.Module, context: Context) -> Plan:
        if not 0 < self.low < self.high <= 1:
            raise self.refuse(f"the target band must satisfy 0 < low < high <= 1, got {self.low}-{self.high}")
        if self.factor is not None:
            factor, how = self.factor, f"factor {self.factor} given"
        else:
            s_mu, source = self._mean_saturation(model, context)
            band = f"{self.low:.0%}-{self.high:.0%}"
            if self.low <= s_mu <= self.high:
                return Plan(
                    self.name,
                    {**self.params(), "factor": 1.0},
                    notes=(f"{source}: {s_mu:.1%}, already in {band}: widths stay",),
                )
            factor = s_mu / ((self.low + self.high) / 2)
            how = (
                f"{source}: {s_mu:.1%}, outside {band}; with saturation proportional to 1/width, widths x "
                f"{factor:.3f} bring it to {(self.low + self.high) / 2:.0%}"
            )
        if not 1 / 64 <= factor <= 16:
            raise self.refuse(f"a width factor of {factor:.3g} is outside 1/64-16")
        try:
            groups, callers = channel_groups(model, context.analysis)
        except ValueError as err:
            raise self.refuse(str(err)) from err
        untraced = [
            path
            for path, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and path not in callers
        ]
        if untraced:
            raise self.refuse(
                f"{len(untraced)} conv/linear layers are not run by the forward pass at evaluation "
                f"({', '.join(untraced[:3])}{', ...' if len(untraced) > 3 else ''}), e.g. auxiliary heads used "
                "only in training; their widths could not follow. Remove them first (truncate prunes them)"
            )
        edits = []
        for path, name in callers.items():
            module = model.get_submodule(path)
            (group, _, _), *_ = groups.slots[name]
            out = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
            new_out = new_width(groups, group, factor, self.divisor)
            why = (
                "fixed: the model's output" if groups.is_fixed(group)
                else f"x {factor:.3f}, rounded to a multiple of {self.divisor} (or of its groups)"
            )  # fmt: skip
            edits.append(Edit("resize", name, f"{type(module).__name__}: {out} -> {new_out} outputs", why))
        params = {**self.params(), "factor": round(factor, 6)}
        rebuilt = [node.target for node in context.analysis.graph if _resizable(model, node, groups)]
        cost = _cost_change(model, context.analysis, groups, rebuilt, factor, self.divisor)
        return Plan(
            self.name,
            params,
            tuple(edits),
            (how, cost),
            WidthFactor(round(factor, 6)),
            new_modules=tuple(rebuilt),
        )

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        groups, callers = channel_groups(model, context.analysis)
        selection = _selection(model, groups, callers, plan.payload.factor, self.divisor)
        for node in context.analysis.graph:
            if node.target in plan.new_modules:
                module = model.get_submodule(node.target)
                out_index = _flat_index(groups.slots[node.name], groups, selection)
                in_index = _flat_index(groups.slots[node.inputs[0]], groups, selection)
                set_submodule(model, node.target, _rebuilt(module, out_index, in_index))
        return model


def _cost_change(
    model: nn.Module,
    analysis: Analysis,
    groups: ChannelGroups,
    rebuilt: list[str],
    factor: float,
    divisor: int,
) -> str:
    """The parameter and multiply-add change of the rebuilt layers, counted from the new widths."""

    def width(slot: list[Segment], new: bool) -> int:
        return sum((new_width(groups, g, factor, divisor) if new else c) * r for g, c, r in slot)

    params = [0, 0]
    macs = [0, 0]
    for node in analysis.graph:
        if node.target not in rebuilt:
            continue
        module = model.get_submodule(node.target)
        positions = (
            math.prod(node.output_shape[2:]) if node.output_shape and len(node.output_shape) > 2 else 1
        )
        for i, new in enumerate((False, True)):
            c_out, c_in = width(groups.slots[node.name], new), width(groups.slots[node.inputs[0]], new)
            bias = c_out if getattr(module, "bias", None) is not None else 0
            if isinstance(module, nn.Conv2d):
                g = c_in if module.groups == module.in_channels == module.out_channels > 1 else module.groups
                weights = c_out * (c_in // g) * math.prod(module.kernel_size)
                params[i] += weights + bias
                macs[i] += weights * positions
            elif isinstance(module, nn.Linear):
                params[i] += c_out * c_in + bias
                macs[i] += c_out * c_in * positions
            else:
                params[i] += (c_out if getattr(module, "weight", None) is not None else 0) + bias
    total = sum(p.numel() for p in model.parameters())
    after = total + params[1] - params[0]
    return (
        f"params {total / 1e6:.2f} M -> {after / 1e6:.2f} M ({after / total - 1:+.1%}); conv and linear "
        f"multiply-adds {macs[0] / 1e6:.1f} M -> {macs[1] / 1e6:.1f} M ({macs[1] / max(macs[0], 1) - 1:+.1%})"
    )


def _rebuilt(module: nn.Module, out_index: list[int], in_index: list[int]) -> nn.Module:
    """``module`` at its new width, its parameters and statistics carried over where channels were kept."""
    if isinstance(module, nn.Conv2d):
        depthwise = module.groups == module.in_channels == module.out_channels > 1
        groups = len(in_index) if depthwise else module.groups
        fresh = nn.Conv2d(
            len(in_index),
            len(out_index),
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            groups=groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        ).to(module.weight)
        if depthwise:
            fresh.weight.data = _resize(module.weight, out_index, None, fresh.weight.detach())
        else:  # group g's outputs read group g's inputs, numbered from 0 within the group
            old_in, new_in, new_out = (
                module.in_channels // groups,
                len(in_index) // groups,
                len(out_index) // groups,
            )
            parts = []
            for g in range(groups):
                rows = out_index[g * new_out : (g + 1) * new_out]
                columns = [c - g * old_in if c >= 0 else -1 for c in in_index[g * new_in : (g + 1) * new_in]]
                init = fresh.weight.detach()[g * new_out : (g + 1) * new_out]
                parts.append(_resize(module.weight, rows, columns, init))
            fresh.weight.data = torch.cat(parts)
    elif isinstance(module, nn.Linear):
        fresh = nn.Linear(len(in_index), len(out_index), bias=module.bias is not None).to(module.weight)
        fresh.weight.data = _resize(module.weight, out_index, in_index, fresh.weight.detach())
    else:
        if isinstance(module, nn.GroupNorm):
            fresh = nn.GroupNorm(module.num_groups, len(out_index), module.eps, module.affine)
        else:
            fresh = nn.BatchNorm2d(
                len(out_index), module.eps, module.momentum, module.affine, module.track_running_stats
            )
        fresh = fresh.to(next(module.parameters(), next(module.buffers(), torch.empty(0))))
        for name in ("weight", "running_mean", "running_var"):
            if getattr(module, name, None) is not None:
                getattr(fresh, name).data = _resize(
                    getattr(module, name), out_index, None, getattr(fresh, name).detach()
                )
    if getattr(module, "bias", None) is not None:
        fresh.bias.data = _resize(module.bias, out_index, None, fresh.bias.detach())
    return fresh
