"""The classifier head as the rewrites see it: whether it reads a feature map whose size is fixed."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from .graph import LayerGraph
from .receptive import LayerField


def fixed_size_head(graph: LayerGraph, fields: Mapping[str, LayerField]) -> tuple[str, str] | None:
    """A Linear that reads flattened positions whose number is not fixed by adaptive pooling.

    Removing or moving downsampling changes the size of such a map, and the head breaks. Returns
    ``(linear, source)``: the head and the layer that sets the size of what it flattens.
    """
    for node in graph:
        if node.effect.category != "linear" or not node.effect.is_global:
            continue
        if any(r == float("inf") for r in fields[node.name].input.min):
            continue  # after global pooling: any size works
        queue, seen = deque(node.inputs), set()
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            source = graph[name]
            if source.effect.changes_receptive_field or source.name == graph.input_name:
                if source.effect.category != "adaptive_pool":
                    return node.name, source.name
                continue
            queue.extend(source.inputs)
    return None
