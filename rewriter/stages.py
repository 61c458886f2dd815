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

from torch import nn

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
    """The conv and pooling layers of the stem, and the blocks found.

    With no blocks, the stem is the layers up to and including the first downsampling layer.
    """
    blocks = find_blocks(model, graph)
    spatial = [n for n in graph if n.effect.category in ("conv", "pool") and n.op != "placeholder"]
    if blocks:
        return [n for n in spatial if n.index < blocks[0].first], blocks
    first_down = next((n for n in spatial if is_downsampling(n)), None)
    if first_down is None:
        return [], blocks
    return [n for n in spatial if n.index <= first_down.index], blocks
