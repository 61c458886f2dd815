"""Attention gates: element-wise products that weight a feature map, and the branches that compute them.

Paper 000 IV-D and dissertation 10.1: squeeze-and-excitation, spatial attention and CBAM "incorporate
global information about the image into the feature map via multiplication", yet "while attention modules
technically enrich the data with more global information, they do not similarly expand the receptive
field"; the layers they add are omitted from the analysed sequence, and the border does not move.

The rule, on the LayerGraph. At an element-wise product (``mul``, ``*``, ``mul_``) of two or more image
tensors, an operand ``g`` is a **gate** of the other operand ``f`` when

1. ``g`` is computed from ``f``: ``f`` is an ancestor of ``g`` (the gate branch forks off the feature
   path), and
2. ``g`` acts as a weighting: it is the output of a sigmoid-like op (sigmoid, hard-sigmoid; through ops
   that only move values: view, expand, unsqueeze, permute, ...), or it is broadcast over positions
   (one position per axis, a per-channel weight) and its receptive field is unbounded (a global op
   computed it).

Condition 2 covers SE (torchvision's ``SqueezeExcitation``, timm's ``SqueezeExcite`` and
``EffectiveSEModule``), ECA, CBAM's channel gate and GCNet's ``channel_mul`` fusion (sigmoid, or
per-channel after global pooling), and CBAM's spatial gate (a 7x7 conv over channel-pooled maps, then a
sigmoid: a bounded field, and a gate by the papers, which treat spatial attention like SE).

The product then carries the receptive field of its feature operands only: r_min and r_max of the feature
path are unchanged. Every node that reaches the output only through a gate (the pooling, the small convs
or linears, the sigmoid of the branch) is in the **attention branch**: its layers are listed with the role
``"attention"`` and take no part in the border runs. A global context that is *added* (GCNet's default
``channel_add``, a non-local block's ``x + W(y)``) is no gate: the sum keeps the unbounded r_max.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from .graph import LayerGraph, LayerNode

#: element-wise products (functions, tensor methods and ``operator`` names)
PRODUCTS = frozenset({"mul", "mul_", "imul", "multiply", "__mul__", "__rmul__"})
#: ops whose output is a weight in (0, 1): the gating non-linearities
SIGMOID_LIKE = frozenset(
    {"Sigmoid", "Hardsigmoid", "HardSigmoid", "sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_",
     "hard_sigmoid"}
)  # fmt: skip
#: ops that move or convert values without changing them, looked through to find a gate's last op
_VALUE_PRESERVING = frozenset(
    {"contiguous", "clone", "to", "type", "type_as", "float", "half", "double", "bfloat16", "Identity",
     "Dropout", "dropout"}
)  # fmt: skip


def is_product(node: LayerNode) -> bool:
    return node.type in PRODUCTS and len(node.inputs) >= 2


def _source(graph: LayerGraph, name: str) -> LayerNode:
    """The op that computed the values of ``name``: layout moves and conversions are looked through."""
    node = graph[name]
    while (node.effect.category == "layout" or node.type in _VALUE_PRESERVING) and len(node.inputs) == 1:
        node = graph[node.inputs[0]]
    return node


def _positions(node: LayerNode) -> int:
    """How many positions the output of ``node`` holds (1: it is broadcast over the feature map)."""
    layout = node.effect.layout
    if not isinstance(layout, tuple) or node.output_shape is None or len(layout) != len(node.output_shape):
        return -1
    extent = 1
    for dim in layout:
        for factor in dim:
            if factor.axis is not None:
                extent *= factor.extent
    return extent


def _derived_from(graph: LayerGraph, gate: str, feature: str) -> bool:
    """Whether ``feature`` is an ancestor of ``gate`` (a backward walk that stops at earlier nodes)."""
    floor = graph[feature].index
    seen, stack = {gate}, [gate]
    while stack:
        for parent in graph.graph.predecessors(stack.pop()):
            if parent == feature:
                return True
            if parent not in seen and graph[parent].index > floor:
                seen.add(parent)
                stack.append(parent)
    return False


def gate_inputs(graph: LayerGraph, node: LayerNode, unbounded: Callable[[str], bool]) -> frozenset[str]:
    """The inputs of the product ``node`` that are gates of another input (empty for any other node).

    ``unbounded(name)`` tells whether the receptive field of a tensor is unbounded on some axis.
    """
    if not is_product(node):
        return frozenset()
    weighting = set()
    for name in node.inputs:
        sigmoid = _source(graph, name).type in SIGMOID_LIKE
        if sigmoid or (_positions(graph[name]) == 1 and unbounded(name)):
            weighting.add(name)
    features = [name for name in node.inputs if name not in weighting]
    if not features:
        return frozenset()
    return frozenset(g for g in weighting if any(_derived_from(graph, g, f) for f in features))


def attention_branch(graph: LayerGraph, gates: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The nodes that reach the output only through a gate: ``gates`` maps each product to its gates.

    A node is in the branch when it has successors and each of them is in the branch or is a product the
    node gates; walking backwards in execution order sees every successor before the node.
    """
    gated_by = {product: set(found) for product, found in gates.items() if found}
    if not gated_by:
        return frozenset()
    branch: set[str] = set()
    for node in reversed(graph.nodes):
        successors = list(graph.graph.successors(node.name))
        if (
            successors
            and node.name != graph.input_name
            and all(s in branch or node.name in gated_by.get(s, ()) for s in successors)
        ):
            branch.add(node.name)
    return frozenset(branch)
