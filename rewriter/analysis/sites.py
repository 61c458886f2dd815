"""Downsampling sites: where a network reduces its resolution, as stretches every path passes through.

A *site* lies between two consecutive dominators of the output (points every path from the input to the
output passes through) and holds the layers with a stride above 1 there: the stem's conv, its max-pool, a
ResNet block's strided conv together with its strided 1x1 shortcut. Changing a site as a whole keeps every
merge inside it consistent. Strategies that move or drop downsampling (``reposition-downsampling``) work on
sites.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .graph import LayerGraph, LayerNode, dominators
from .stages import is_downsampling


@dataclass(frozen=True)
class Site:
    """One downsampling site: the dominator just before it (``start``) and its strided layers."""

    start: str
    layers: tuple[str, ...]


def downsampling_sites(graph: LayerGraph) -> list[Site]:
    """The model's downsampling sites in execution order (global ops do not downsample).

    Example:
        >>> import rewriter
        >>> model, _ = rewriter.load_model("resnet18")
        >>> [site.layers for site in downsampling_sites(rewriter.analyze(model, 32, flops=False).graph)][:3]
        [('conv1',), ('maxpool',), ('layer2.0.conv1', 'layer2.0.downsample.0')]
    """
    chain = [*dominators(graph), graph.output_name]
    nodes = graph.nodes
    sites = []
    for here, there in itertools.pairwise(chain):
        low, high = graph[here].index, graph[there].index
        strided = [n.name for n in nodes if low < n.index <= high and is_downsampling(n)]
        if strided:
            sites.append(Site(here, tuple(strided)))
    return sites


def module_ending_at(graph: LayerGraph, name: str) -> str | None:
    """The deepest module path that runs once, in one piece, and whose output is node ``name``'s tensor
    (``layer1.1`` for ``layer1.1.relu_1``; the block's ReLU itself runs twice); None if there is none."""
    node = graph[name]
    path = node.target if node.is_module else name.rpartition(".")[0]
    parts = path.split(".") if path else []
    nodes = graph.nodes
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        inside = [n for n in nodes if _owned_by(n, prefix)]
        first = inside[0]
        calls = [n for n in nodes if first.is_module and n.is_module and n.target == first.target]
        contiguous = inside[-1].index - first.index == len(inside) - 1
        if inside[-1].name == name and contiguous and len(calls) <= 1:
            return prefix
    return None


def _owned_by(node: LayerNode, prefix: str) -> bool:
    key = node.target if node.is_module else node.name
    return key == prefix or key.startswith(prefix + ".")
