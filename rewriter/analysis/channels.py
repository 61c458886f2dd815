"""Channels as the analyses see them: a layer's channels and groups, the kind of a convolution (paper 003's
property functions need it), and which channels of a network are coupled, so that a width change keeps
them equal (dissertation 11.3's uniform scaling).

How each op acts on channels is declared in the op table beside its receptive-field rule
(``rules.ChannelAction``: keep, mix, join, reshape) and recorded on every ``LayerNode``; this module reads
only that and the graph. Coupled channels form one group: a residual addition, a batch norm, a depthwise
convolution or an activation passes its input's group on; a concatenation or a flatten lays groups side
by side (a list of segments); a convolution or linear layer starts a new group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from .._errors import AnalysisError
from . import layouts
from .graph import LayerGraph, LayerNode
from .rules import is_layout
from .rules.channel_ops import ChannelOp, ConvKind, conv_kind, module_channels

__all__ = [
    "ChannelCoupling", "ChannelError", "ChannelGroups", "ChannelOp", "ConvKind", "Segment", "channel_coupling",
    "channel_op", "conv_kind", "module_channels",
]  # fmt: skip


def channel_op(node: LayerNode) -> ChannelOp | None:
    """The kind of the convolution module a node calls, or None for any other node."""
    if node.groups is None or node.in_channels is None:
        return None
    return conv_kind(node.in_channels, node.groups, tuple(node.effect.kernel_size or (1,)))


class ChannelError(AnalysisError):
    """The channels of a network cannot be followed: an op whose effect on them is not known, by name."""


Segment = tuple[int, int, int]  # (group, channels, repeat): a run of a group's channels, each repeated


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
            raise ChannelError(f"'{where}' joins tensors whose channels are laid out differently")
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

    @property
    def roots(self) -> set[int]:
        return {self.find(g) for g in range(len(self.parent))}


@dataclass(frozen=True)
class ChannelCoupling:
    """The channel groups of a traced model, and for each conv and linear module the node that calls it."""

    groups: ChannelGroups = field(repr=False)
    callers: dict[str, str]  # module path -> node name

    def slot(self, name: str) -> list[Segment]:
        """The channel segments of node ``name``'s output."""
        return self.groups.slots[name]

    def group_of(self, name: str) -> int:
        """The group of node ``name``'s first output channels (a conv's or linear layer's only group)."""
        return self.groups.slots[name][0][0]


def channel_coupling(graph: LayerGraph) -> ChannelCoupling:
    """Read the graph into channel groups; the model's input channels and class outputs are fixed.

    Raises:
        ChannelError: an op whose effect on channels is not known (a channel split, a shuffle, a reshape
            that is not a flatten, a channels-last tensor), or a conv/linear module that runs twice; by name.
    """
    groups = ChannelGroups()
    callers: dict[str, str] = {}
    for node in graph:
        slot = _slot(graph, groups, node)
        if slot is not None:
            groups.slots[node.name] = slot
        if node.channel_action == "mix" and node.is_module:
            if node.target in callers:
                raise ChannelError(
                    f"module '{node.target}' runs twice; its width cannot be changed for one call only"
                )
            callers[node.target] = node.name
    for name in graph[graph.output_name].inputs:
        for group, _, _ in groups.slots.get(name, []):
            groups.fixed.add(group)  # the class scores keep their number
    return ChannelCoupling(groups, callers)


def _channels(node: LayerNode) -> int | None:
    """Channels of a node's output: dim 1 of a ``[N, C]`` tensor or of a channels-first ``[N, C, H, W]``
    one (a feature map, or a pooled ``[N, C, 1, 1]``), whose dim 1 holds no positions."""
    shape, layout = node.output_shape, node.effect.layout
    if not shape or len(shape) not in (2, 4):
        return None
    if len(shape) == 4 and not (is_layout(layout) and not layouts.spatial_axes(layout, (0, 1))):
        return None  # channels last ([N, H, W, C]) or positions moved into the channels
    return shape[1]


def _slot(graph: LayerGraph, groups: ChannelGroups, node: LayerNode) -> list[Segment] | None:
    inputs = [groups.slots[i] for i in node.inputs if i in groups.slots]
    if node.op == "placeholder":
        return groups.new(node.output_shape[1], fixed=True)
    if node.op == "output":
        return None
    action = node.channel_action
    if action == "mix":
        return _mixed(graph, groups, node, inputs)
    if not inputs or _channels(node) is None:
        raise ChannelError(f"'{node.name}' ({node.type}): its output is not a [N, C] or [N, C, H, W] tensor")
    if action == "keep":
        return _kept(graph, groups, node, inputs)
    if action == "join":
        return _joined(graph, node, inputs)
    if action == "reshape" and len(node.output_shape) == 2:
        return _flattened(node, inputs[0])
    raise ChannelError(f"'{node.name}' ({node.type}): its effect on channels is not known")


def _module(graph: LayerGraph, node: LayerNode) -> nn.Module:
    return graph.graph_module.get_submodule(node.target)


def _mixed(graph: LayerGraph, groups: ChannelGroups, node: LayerNode, inputs: list) -> list[Segment]:
    module = _module(graph, node) if node.is_module else None
    if isinstance(module, nn.Linear):
        return groups.new(module.out_features)
    if not isinstance(module, nn.Conv2d):
        raise ChannelError(f"'{node.name}' ({node.type}): only Conv2d and Linear modules can change width")
    op = channel_op(node)
    if op.kind in ("standard", "pointwise"):
        return groups.new(module.out_channels)
    if op.kind == "depthwise" and module.in_channels == module.out_channels:
        return inputs[0]  # one channel in, the same channel out
    if op.kind == "depthwise" or len(inputs[0]) != 1:
        raise ChannelError(
            f"grouped convolution '{node.name}' ({module.groups} groups, {module.in_channels} -> "
            f"{module.out_channels} channels): only depthwise convolutions and grouped ones on a single "
            "tensor with a fixed number of groups are supported"
        )
    groups.split(inputs[0][0][0], module.groups)  # cardinality stays; each group's width scales
    slot = groups.new(module.out_channels)
    groups.split(slot[0][0], module.groups)
    return slot


def _kept(graph: LayerGraph, groups: ChannelGroups, node: LayerNode, inputs: list) -> list[Segment]:
    """Element-wise ops, norms and pooling: inputs with the output's channels are coupled; a reduction of
    the channels to one (CBAM's channel mean) starts a fixed one-channel group."""
    channels = _channels(node)
    full = [
        slot for name, slot in zip(node.inputs, inputs, strict=False) if _channels(graph[name]) == channels
    ]
    if not full:
        if channels == 1:
            return groups.new(1)
        raise ChannelError(
            f"'{node.name}' ({node.type}) changes the number of channels without a rule for how"
        )
    if node.is_module and isinstance(module := _module(graph, node), nn.GroupNorm):
        groups.split(full[0][0][0], module.num_groups)
    slot = full[0]
    for other in full[1:]:
        groups.union(slot, other, node.name)
    return slot


def _joined(graph: LayerGraph, node: LayerNode, inputs: list[list[Segment]]) -> list[Segment]:
    """A concatenation along the channels: the inputs' segments side by side."""
    shapes = [graph[name].output_shape for name in node.inputs if name in graph and graph[name].output_shape]
    out = node.output_shape
    if len(shapes) != len(inputs) or any(len(s) != len(out) for s in shapes):
        raise ChannelError(f"'{node.name}' concatenates tensors whose channels are not all followed")
    joined = [d for d in range(len(out)) if sum(s[d] for s in shapes) == out[d]]
    if len(shapes) > 1 and joined != [1]:
        where = f"dim {joined[0]}" if joined else "another dim"
        raise ChannelError(f"'{node.name}' concatenates along {where}, not the channels")
    return [segment for slot in inputs for segment in slot]


def _flattened(node: LayerNode, slot: list[Segment]) -> list[Segment]:
    shape = node.input_shape
    positions = math.prod(shape[2:]) if shape and len(shape) > 2 else 1
    return [(g, c, r * positions) for g, c, r in slot]
