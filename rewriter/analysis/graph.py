"""Trace a model with torch.fx at the target size and turn it into a ``LayerGraph`` on networkx.

Every op of the traced model becomes a node named by its dotted module path (``layer1.0.conv1``; functional
ops inside a module get the module path plus the op, ``layer1.0.add``; a second call gets ``_1``), carrying
what the analyses need: the op's effect on positions (kernel, stride, dilation per axis, from
``rewriter.analysis.rules``), input and output shapes at the target size (shape propagation), channels,
groups, and the parameters it owns. Edges are the image's data flow; constants and shape arithmetic are left out.
Nothing downstream re-walks the nn.Module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
import torch.fx as fx
from torch import nn

from . import layouts, rules
from .flops_meta import FlopCount, FlopCounter
from .fx_tracer import ModuleUse, module_use, trace
from .modes import eval_mode
from .rules import OpContext, OpEffect, Recorded, TensorShape
from .rules.channel_ops import module_channels
from .shapes import record_shapes


@dataclass(frozen=True)
class LayerNode:
    """One op of the traced model, as the analyses see it."""

    name: str
    index: int
    op: str  # the fx op: placeholder, call_module, call_function, call_method, output
    type: str  # the module class for modules, else the function or method name
    target: str  # the module's dotted path, or the function/method name
    effect: OpEffect = field(repr=False)
    inputs: tuple[str, ...]
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    input_size: tuple[int, int] | None  # spatial extent (H, W) of the first input, where it is an image
    output_size: tuple[int, int] | None
    in_channels: int | None = None
    out_channels: int | None = None
    groups: int | None = None
    params: tuple[str, ...] = ()
    channel_action: rules.ChannelAction | None = None  # how the op acts on channels (the op table's)

    @property
    def is_module(self) -> bool:
        return self.op == "call_module"

    @property
    def is_feature_map(self) -> bool:
        """Whether the output is one ``[N, C, H, W]`` tensor (channels first, one dim per spatial axis)."""
        layout = self.effect.layout
        return rules.is_layout(layout) and layouts.is_image_layout(layout)


@dataclass
class LayerGraph:
    """The traced model as a networkx DiGraph of ``LayerNode``s (node key = name), in execution order."""

    graph: nx.DiGraph
    input_size: tuple[int, int]
    input_name: str
    output_name: str
    graph_module: fx.GraphModule = field(repr=False)
    fx_names: dict[str, fx.Node] = field(repr=False, default_factory=dict)
    _order: list[LayerNode] = field(repr=False, default_factory=list, compare=False)

    def __iter__(self) -> Iterator[LayerNode]:
        return iter(self.nodes)

    def module_use(self) -> ModuleUse:
        """Which submodules the traced forward calls and reads, and which of them its output depends on."""
        return module_use(self.graph_module)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __getitem__(self, name: str) -> LayerNode:
        return self.graph.nodes[name]["layer"]

    def __contains__(self, name: str) -> bool:
        return name in self.graph

    @property
    def nodes(self) -> list[LayerNode]:
        """All nodes in execution order."""
        if len(self._order) != self.graph.number_of_nodes():
            layers = (data["layer"] for _, data in self.graph.nodes(data=True))
            self._order[:] = sorted(layers, key=lambda n: n.index)
        return list(self._order)

    def predecessors(self, name: str) -> list[LayerNode]:
        return [self[p] for p in self.graph.predecessors(name)]

    def successors(self, name: str) -> list[LayerNode]:
        return [self[s] for s in self.graph.successors(name)]


def build_layer_graph(
    model: nn.Module,
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    leaf_classes: Sequence[type] = (),
) -> LayerGraph:
    """Trace ``model`` in eval mode, propagate shapes for a ``1 x in_channels x H x W`` input, build the graph.

    The model's parameters and training flags are left as they were.
    """
    with eval_mode(model):
        gm, names = trace(model, leaf_classes=leaf_classes)
        return graph_at(gm, names, input_size, in_channels=in_channels)[0]


def graph_at(
    gm: fx.GraphModule,
    names: dict[fx.Node, str],
    input_size: tuple[int, int],
    *,
    in_channels: int = 3,
    count_flops: bool = False,
    modules: dict[str, nn.Module] | None = None,
    module_info: dict[str, dict[str, Any]] | None = None,
) -> tuple[LayerGraph, FlopCount | None]:
    """The LayerGraph of a traced model at ``input_size`` (and its FLOPs, counted in the same shape pass).

    What shape propagation records at this size is kept beside ``gm`` (``rules.Recorded``), not in its
    nodes, so analyses of one trace at different sizes share nothing but the trace. The caller puts the
    model in the mode it is to be analyzed in (eval). ``modules`` (``dict(gm.named_modules())``) and
    ``module_info`` (filled here: each module's parameter names and channels) spare a caller that analyzes
    one trace at many sizes walking the module tree each time.
    """
    modules = modules if modules is not None else dict(gm.named_modules())
    param = next(gm.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    shape = (1, in_channels, *input_size)
    recorded, counter = record_shapes(
        gm, names, (shape, dtype, device), input_size, FlopCounter if count_flops else None, modules
    )
    info = module_info if module_info is not None else {}
    graph = _to_layer_graph(gm, names, input_size, modules, info, recorded)
    return graph, counter.result() if counter is not None else None


def _to_layer_graph(
    gm: fx.GraphModule,
    names: dict[fx.Node, str],
    input_size: tuple[int, int],
    modules: dict[str, nn.Module],
    info: dict[str, dict[str, Any]],
    recorded: Recorded,
) -> LayerGraph:
    graph = nx.DiGraph()
    env: dict[fx.Node, Any] = {}
    input_name = output_name = ""
    fx_names: dict[str, fx.Node] = {}
    for index, node in enumerate(gm.graph.nodes):
        if node.op == "placeholder":
            if input_name:
                continue  # extra placeholders are optional arguments, not image data
            env[node] = layouts.image_layout(_shape(node, recorded))
            effect = OpEffect("layout", layout=env[node])
            input_name = names[node]
        elif node.op == "get_attr":
            continue
        elif node.op == "output":
            effect = OpEffect("layout")
            output_name = "output"
            names[node] = output_name
        else:
            module = modules[node.target] if node.op == "call_module" else None
            ctx = OpContext(node, module, env, recorded)
            if not _depends_on_image(node, env):
                continue
            effect = rules.effect_of(ctx)
            if effect.layout is None:
                continue  # shape arithmetic (size(), dim(), asserts): no image data flows out
            env[node] = effect.layout
        name = names[node]
        fx_names[name] = node
        inputs = tuple(names[a] for a in node.all_input_nodes if a in env)
        layer = _layer_node(node, name, index, effect, inputs, env, modules, info, recorded)
        graph.add_node(name, layer=layer)
        graph.add_edges_from((source, name) for source in inputs)
    return LayerGraph(graph, input_size, input_name, output_name, gm, fx_names)


def _depends_on_image(node: fx.Node, env: dict[fx.Node, Any]) -> bool:
    return any(a in env for a in node.all_input_nodes)


def _shape(node: fx.Node, recorded: Recorded) -> tuple[int, ...] | None:
    meta = recorded.outputs.get(node)
    if isinstance(meta, (list, tuple)):
        meta = next((m for m in meta if isinstance(m, TensorShape)), None)
    return meta.shape if isinstance(meta, TensorShape) else None


def _spatial_size(layout: Any, shape: tuple[int, ...] | None) -> tuple[int, int] | None:
    """(H, W) of a tensor whose layout has one dim for height and one for width, else None."""
    if isinstance(layout, rules.Several):
        layout = next((part for part in layout if part), None)
    if not shape or not layout or len(layout) != len(shape):
        return None
    return layouts.spatial_size(layout, shape)


def _layer_node(
    node: fx.Node,
    name: str,
    index: int,
    effect: OpEffect,
    inputs: tuple[str, ...],
    env: dict[fx.Node, Any],
    modules: dict[str, nn.Module],
    info: dict[str, dict[str, Any]],
    recorded: Recorded,
) -> LayerNode:
    first_input = next((a for a in node.all_input_nodes if a in env), None)
    input_shape = _shape(first_input, recorded) if first_input is not None else None
    output_shape = _shape(node, recorded)
    known: dict[str, Any] = {}
    module = None
    if node.op == "call_module":
        module = modules[node.target]
        type_name = type(module).__name__
        known = info.get(node.target) or info.setdefault(node.target, _module_info(node.target, module))
    elif node.op in ("call_function", "call_method"):
        type_name = rules.target_name(node)
    else:
        type_name = node.op
    return LayerNode(
        name=name,
        index=index,
        op=node.op,
        type=type_name,
        target=str(node.target) if node.op == "call_module" else type_name,
        effect=effect,
        inputs=inputs,
        input_shape=input_shape,
        output_shape=output_shape,
        input_size=_spatial_size(env.get(first_input), input_shape) if first_input is not None else None,
        output_size=_spatial_size(env.get(node), output_shape),
        channel_action=rules.channel_action(module, node) if node.op.startswith("call_") else None,
        **known,
    )


def _module_info(target: str, module: nn.Module) -> dict[str, Any]:
    """What a LayerNode records of its module that does not depend on the size: parameters, channels."""
    return {"params": tuple(f"{target}.{p}" for p, _ in module.named_parameters()), **module_channels(module)}


def dominators(graph: LayerGraph) -> list[str]:
    """Nodes every path from the input to the output passes through, in execution order (networkx)."""
    idom = nx.immediate_dominators(graph.graph, graph.input_name)
    chain, node = [], idom.get(graph.output_name)
    while node is not None and node != graph.input_name:
        chain.append(node)
        node = idom[node]
    chain.append(graph.input_name)
    return sorted(chain, key=lambda name: graph[name].index)
