"""Where a network can be cut: points every path to the output passes through (dominators of the output),
before each block, that carry one ``[N, C, H, W]`` feature map a global-pooling head can be attached to."""

from __future__ import annotations

import itertools

from .graph import LayerGraph, dominators


def block_name(names: list[str]) -> str:
    """The deepest module path shared by ``names`` (``layer3.0`` for layer3.0.conv1 ... layer3.0.relu_1)."""
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common) or names[0]


def cut_points(graph: LayerGraph) -> list[tuple[str | None, list[str]]]:
    """Where a network can be cut: before each block, at a point every path to the output passes through.

    Returns ``(cut, block)`` pairs in execution order. ``block`` holds the nodes from one dominator of the
    output to the next (a residual block up to its addition) and at least one conv or pooling layer of the
    border test. ``cut`` is the last dominator before the block that gives one ``[N, C, H, W]`` feature map
    (a GAP head needs one); a channel split or a reshape just before the block is skipped back over, as long
    as no conv or pooling layer is skipped with it. It is None where there is no such point (a network whose
    maps are channels-last there). The input itself is never a cut: cutting there would keep no layer.
    """
    chain = dominators(graph)
    order = graph.nodes
    points: list[tuple[str | None, list[str]]] = []
    for position, (here, there) in enumerate(itertools.pairwise([*chain, graph.output_name])):
        segment = [n for n in order if graph[here].index < n.index <= graph[there].index]
        if any(n.effect.takes_part_in_border for n in segment):
            points.append((_feature_map_before(graph, chain[: position + 1]), [n.name for n in segment]))
    return points


def _feature_map_before(graph: LayerGraph, chain: list[str]) -> str | None:
    """The last of ``chain`` that is an [N, C, H, W] feature map, with no conv/pool between it and the end."""
    end = graph[chain[-1]].index
    for name in reversed(chain):
        node = graph[name]
        if name == graph.input_name:
            return None
        if node.is_feature_map:
            return name
        between = [n for n in graph.nodes if node.index <= n.index <= end]
        if any(n.effect.takes_part_in_border for n in between):
            return None
    return None
