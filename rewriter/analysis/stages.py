"""Blocks and the stem: the repeated units of a network and the layers before the first of them.

A *block* is an instance of a module class that repeats (at least twice) and holds at least two
convolution or linear layers: a residual block, an inverted-residual block, a DW+PW pair, a multi-path
module. Nested blocks (a squeeze-and-excitation inside an MBConv) belong to their outermost block. The
*stem* is every layer that runs before the first block (paper 000 V: "the first two downsampling layers
within the stem of ResNet18"). A plain stack of layers (VGG) has no blocks; its stem is taken to end at
its first downsampling layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from torch import nn

from .channels import ChannelOp, channel_op
from .graph import LayerGraph, LayerNode

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Block:
    """One instance of a repeated block: its module path, class, and the graph nodes inside it."""

    name: str
    type: str
    nodes: tuple[str, ...]
    first: int  # execution index of its first node
    last: int


def _weighted_layers(module: nn.Module) -> int:
    return sum(isinstance(m, _WEIGHTED) for m in module.modules())


def block_classes(model: nn.Module) -> set[type]:
    """Module classes that repeat and hold at least two conv/linear layers (containers excluded)."""
    counts = Counter(type(m) for m in model.modules())
    candidates = {cls for cls, n in counts.items() if n >= 2 and not issubclass(cls, _CONTAINERS)}
    return {
        cls for cls in candidates if all(_weighted_layers(m) >= 2 for m in model.modules() if type(m) is cls)
    }


def _inside(node_name: str, path: str) -> bool:
    return node_name == path or node_name.startswith(path + ".")


def find_blocks(model: nn.Module, graph: LayerGraph) -> list[Block]:
    """The outermost block instances that run in ``graph`` (traced from ``model``), in execution order."""
    classes = block_classes(model)
    paths = [path for path, m in model.named_modules() if path and type(m) in classes]
    outermost = [p for p in paths if not any(p.startswith(q + ".") for q in paths if q != p)]
    blocks = []
    for path in outermost:
        nodes = [n for n in graph.nodes if _inside(n.name, path)]
        if nodes:
            first, last = nodes[0].index, nodes[-1].index
            kind = type(model.get_submodule(path)).__name__
            blocks.append(Block(path, kind, tuple(n.name for n in nodes), first, last))
    return sorted(blocks, key=lambda b: b.first)


def is_downsampling(node: LayerNode) -> bool:
    """A layer whose stride is larger than 1 on some axis."""
    return any(not a.unbounded and a.stride > 1 for a in node.effect.axes)


def stem(model: nn.Module, graph: LayerGraph) -> tuple[list[LayerNode], list[Block]]:
    """The conv and pooling layers of the stem, and the blocks of the body after it.

    The stem is what runs before the first block of the body. A block that reads the input image itself is
    the stem, not part of the body: RepVGG and MobileOne build their stride-2 stem from the body's block
    class. With no blocks, the stem is the layers up to and including the first downsampling layer.
    """
    blocks = find_blocks(model, graph)
    spatial = [n for n in graph if n.effect.category in ("conv", "pool") and n.op != "placeholder"]
    while blocks and _reads_the_image(graph, blocks[0]):
        blocks = blocks[1:]
    if blocks:
        return [n for n in spatial if n.index < blocks[0].first], blocks
    first_down = next((n for n in spatial if is_downsampling(n)), None)
    if first_down is None:
        return [], blocks
    return [n for n in spatial if n.index <= first_down.index], blocks


def _reads_the_image(graph: LayerGraph, block: Block) -> bool:
    """Whether a block's own nodes read the model's input (nothing with a kernel runs before it)."""
    inside = set(block.nodes)
    before = [n for n in graph if n.index < block.first and n.effect.changes_receptive_field]
    return not before and any(graph.input_name in graph[name].inputs for name in inside)


# --------------------------------------------------------------------------------------------------
# stages and their units (paper 003: a stage is a run of layers at one spatial size)

UnitKind = Literal["block", "conv", "pool"]


@dataclass(frozen=True)
class Unit:
    """What a stage is made of: a block, or (outside blocks) a conv with its norm and activation, or a pool."""

    name: str
    kind: UnitKind
    modules: tuple[str, ...]  # module paths that make it up, in their container's order
    nodes: tuple[str, ...]
    first: int
    last: int
    in_channels: int | None
    out_channels: int | None
    size: tuple[int, int] | None  # spatial size of its output
    downsamples: bool
    growth: int  # IF^w growth at the stage's resolution: sum of (k - 1) along the longest path
    full_growth: int  # the same counting every kernel, as a stride-1 copy of the unit would grow
    channel_ops: tuple[ChannelOp, ...]  # the conv types along that path

    @property
    def repeatable(self) -> bool:
        """A unit that can be removed or copied within its stage without touching its neighbours."""
        return (
            self.kind in ("block", "conv")
            and not self.downsamples
            and self.in_channels is not None
            and self.in_channels == self.out_channels
        )


@dataclass(frozen=True)
class Stage:
    """A run of units at one spatial size; ``in_channels`` (c0) are those of the tensor entering it."""

    index: int
    size: tuple[int, int]
    in_channels: int
    units: tuple[Unit, ...]


def _path_walk(graph: LayerGraph, names: tuple[str, ...], size: tuple[int, int] | None):
    """Longest path through a unit's nodes: (growth at ``size``, growth of every kernel, conv types)."""
    best: dict[str, tuple[int, int, tuple[ChannelOp, ...]]] = {}
    inside = set(names)
    for name in names:
        node = graph[name]
        preds = [best[p] for p in graph.graph.predecessors(name) if p in inside and p in best]
        growth, full, ops = max(preds, default=(0, 0, ()))
        kernel = 1
        if node.effect.category in ("conv", "pool", "window_attention") and not node.effect.is_global:
            kernel = max(a.kernel for a in node.effect.axes)
        here = kernel - 1 if node.input_size is not None and node.input_size == size else 0
        op = channel_op(node)
        best[name] = (growth + here, full + kernel - 1, (*ops, op) if op else ops)
    return max(best.values(), default=(0, 0, ()))


def _trailing_modules(model: nn.Module, path: str) -> tuple[str, ...]:
    """A conv's module and the norm/activation modules right after it in the same container (VGG style)."""
    from .rules import SHAPE_PRESERVING_MODULES

    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    names = list(parent._modules)
    if name not in names:
        return (path,)
    out = [path]
    for sibling in names[names.index(name) + 1 :]:
        if not isinstance(parent._modules[sibling], SHAPE_PRESERVING_MODULES):
            break
        out.append(f"{parent_path}.{sibling}" if parent_path else sibling)
    return tuple(out)


def find_units(model: nn.Module, graph: LayerGraph) -> list[Unit]:
    """Blocks, and the conv and (non-global) pooling layers outside blocks, in execution order."""
    blocks = find_blocks(model, graph)
    in_block = {name for block in blocks for name in block.nodes}
    pieces: list[tuple[str, UnitKind, tuple[str, ...], tuple[str, ...]]] = [
        (block.name, "block", (block.name,), block.nodes) for block in blocks
    ]
    for node in graph:
        if node.name in in_block or node.effect.category not in ("conv", "pool", "adaptive_pool"):
            continue
        if node.effect.is_global or (
            node.effect.category == "adaptive_pool" and not node.effect.changes_receptive_field
        ):
            continue
        kind: UnitKind = "conv" if node.effect.category == "conv" else "pool"
        modules = _trailing_modules(model, node.target) if node.is_module else ()
        pieces.append((node.name, kind, modules, (node.name,)))
    units = []
    for name, kind, modules, nodes in sorted(pieces, key=lambda p: graph[p[3][0]].index):
        first, last = graph[nodes[0]], graph[nodes[-1]]
        sizes = [graph[n].output_size for n in nodes if graph[n].output_size is not None]
        size = sizes[-1] if sizes else None
        in_ch = first.input_shape[1] if first.input_shape and len(first.input_shape) == 4 else None
        out_ch = last.output_shape[1] if last.output_shape and len(last.output_shape) == 4 else None
        down = any(is_downsampling(graph[n]) for n in nodes) or (
            first.input_size is not None and size is not None and size != first.input_size
        )
        growth, full, ops = _path_walk(graph, nodes, size)
        units.append(Unit(name, kind, modules, nodes, first.index, last.index, in_ch, out_ch, size, down,
                          growth, full, ops))  # fmt: skip
    return units


def find_stages(model: nn.Module, graph: LayerGraph) -> list[Stage]:
    """Split the units into stages: a unit whose output is smaller than the current stage's starts a new one
    (a stride >= 2 or a pooling layer starts a stage, paper 003 footnote 1).

    A stage whose input is not an ``[N, C, H, W]`` feature map (tokens entering a LeViT or VOLO stage) has no
    input volume ``w0 x w0 x c0`` for eq. (4); it is left out, with its units.
    """
    stages: list[tuple[tuple[int, int], int | None, list[Unit]]] = []
    for unit in find_units(model, graph):
        if unit.size is None:
            continue
        if not stages or unit.size[0] < stages[-1][0][0] or unit.size[1] < stages[-1][0][1]:
            stages.append((unit.size, unit.in_channels or None, []))
        stages[-1][2].append(unit)
    kept = [(size, c0, units) for size, c0, units in stages if c0 is not None]
    return [Stage(i, size, c0, tuple(units)) for i, (size, c0, units) in enumerate(kept)]
