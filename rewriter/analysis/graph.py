"""Trace a model with torch.fx at the target size and turn it into a ``LayerGraph`` on networkx.

Every op of the traced model becomes a node named by its dotted module path (``layer1.0.conv1``; functional
ops inside a module get the module path plus the op, ``layer1.0.add``; a second call gets ``_1``), carrying
what the analyses need: the op's effect on positions (kernel, stride, dilation per axis, from
``rewriter.layers``), input and output shapes at the target size (fx shape propagation), channels, groups,
and the parameters it owns. Edges are the image's data flow; constants and shape arithmetic are left out.
Nothing downstream re-walks the nn.Module.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import torch
import torch.fx as fx
from torch import nn

from .._errors import InputSizeError, TraceError
from . import layouts
from . import rules as layers
from .rules import OpContext, OpEffect, TensorShape


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

    @property
    def is_module(self) -> bool:
        return self.op == "call_module"

    @property
    def is_feature_map(self) -> bool:
        """Whether the output is one ``[N, C, H, W]`` tensor (channels first, one dim per spatial axis)."""
        layout = self.effect.layout
        return layers.is_layout(layout) and layouts.is_image_layout(layout)


@dataclass
class LayerGraph:
    """The traced model as a networkx DiGraph of ``LayerNode``s (node key = name), in execution order."""

    graph: nx.DiGraph
    input_size: tuple[int, int]
    input_name: str
    output_name: str
    graph_module: fx.GraphModule = field(repr=False)
    fx_names: dict[str, fx.Node] = field(repr=False, default_factory=dict)

    def __iter__(self) -> Iterator[LayerNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __getitem__(self, name: str) -> LayerNode:
        return self.graph.nodes[name]["layer"]

    def __contains__(self, name: str) -> bool:
        return name in self.graph

    @property
    def nodes(self) -> list[LayerNode]:
        """All nodes in execution order."""
        return sorted((data["layer"] for _, data in self.graph.nodes(data=True)), key=lambda n: n.index)

    def predecessors(self, name: str) -> list[LayerNode]:
        return [self[p] for p in self.graph.predecessors(name)]

    def successors(self, name: str) -> list[LayerNode]:
        return [self[s] for s in self.graph.successors(name)]


class _NamingTracer(fx.Tracer):
    """An fx tracer that names nodes by module path and treats ops with receptive-field rules as leaves.

    torchvision's ``NodePathTracer`` does the naming too, but it rescans all names for every node
    (quadratic: about 9 s for the 80 torchvision classifiers); a counter per name does it in linear time.
    """

    def __init__(self, leaf_classes: tuple[type, ...] = ()) -> None:
        super().__init__(autowrap_modules=(math,))
        self.leaf_classes = leaf_classes
        self._qualname = ""
        self.names: dict[fx.Node, str] = {}
        self._counts: dict[str, int] = {}
        self.failed_in: tuple[str, type] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, self.leaf_classes) or layers.has_module_rule(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        outer = self._qualname
        self._qualname = self.path_of_module(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = (self._qualname, type(m))
            raise
        finally:
            self._qualname = outer

    def create_proxy(
        self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **more: Any
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **more)
        node = proxy.node
        if kind in ("call_module", "get_attr"):
            base = str(target)
        else:
            op_name = node.name if kind == "placeholder" else layers.target_name(node)
            base = f"{self._qualname}.{op_name}" if self._qualname else op_name
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        self.names[node] = base if count == 0 else f"{base}_{count}"
        return proxy


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the duration, then restore every submodule's own ``training`` flag."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextlib.contextmanager
def observing(
    model: nn.Module,
    hooks: Iterable[tuple[nn.Module, Callable]] = (),
    pre_hooks: Iterable[tuple[nn.Module, Callable]] = (),
) -> Iterator[None]:
    """Forward passes of ``model`` in eval mode, without gradients, with ``hooks`` (forward hooks) and
    ``pre_hooks`` (forward pre-hooks) attached to their modules; afterwards every hook is removed and every
    submodule's mode restored."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    handles += [module.register_forward_pre_hook(hook) for module, hook in pre_hooks]
    try:
        with eval_mode(model), torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()


def trace(
    model: nn.Module, *, leaf_classes: Sequence[type] = ()
) -> tuple[fx.GraphModule, dict[fx.Node, str]]:
    """Symbolically trace ``model`` (in its current mode) and return the GraphModule and node names.

    Raises:
        TraceError: fx cannot trace the model; the message names the module that broke and the remedy.
    """
    tracer = _NamingTracer(tuple(leaf_classes))
    try:
        graph = tracer.trace(model)
    except Exception as err:
        raise TraceError(_trace_failure_message(model, tracer, err)) from err
    return fx.GraphModule(tracer.root, graph, class_name=type(model).__name__), tracer.names


def _trace_failure_message(model: nn.Module, tracer: _NamingTracer, err: Exception) -> str:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = tracer.failed_in
    if where is None or where[0] == "":
        return (
            f"torch.fx cannot trace {type(model).__name__}: {reason}. The failure is in the model's own "
            "forward(); make it traceable (no Python control flow on tensor values), or analyze a submodule"
        )
    path, cls = where
    return (
        f"torch.fx cannot trace module '{path}' ({cls.__name__}): {reason}. Remedy: pass --leaf-module "
        f"{cls.__name__} to treat it as opaque (its receptive-field effect is then inferred from its shapes "
        "and reported as an assumption)"
    )


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced model once and stores each node's output shape(s) in ``node.meta["tensor_meta"]``.

    Like fx's ShapeProp, but a failure names the node by its LayerGraph name and prints nothing.
    """

    def __init__(self, gm: fx.GraphModule, names: dict[fx.Node, str], input_size: tuple[int, int]) -> None:
        super().__init__(gm)
        self.names = names
        self.input_size = input_size
        self.failure = ""  # the failing node's message (fx appends its own notes to the exception)

    def run_node(self, n: fx.Node) -> Any:
        try:
            if n.op in ("call_function", "call_method", "call_module"):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                n.meta["arg_values"] = fx.node.map_aggregate(
                    (args, kwargs), lambda v: None if isinstance(v, torch.Tensor) else v
                )
            result = super().run_node(n)
        except Exception as err:
            self.failure = self._message(n, err)
            raise InputSizeError(self.failure) from err
        found = False

        def record(obj: Any) -> Any:
            nonlocal found
            if isinstance(obj, torch.Tensor):
                found = True
                return TensorShape(tuple(obj.shape), obj.dtype)
            return obj

        meta = fx.node.map_aggregate(result, record)
        if found:
            n.meta["tensor_meta"] = meta
        return result

    def _message(self, n: fx.Node, err: Exception) -> str:
        name = self.names.get(n, n.name)
        kind = (
            type(self.module.get_submodule(n.target)).__name__
            if n.op == "call_module"
            else layers.target_name(n)
        )
        reason = _reason(err)
        h, w = self.input_size
        shapes = [
            a.meta["tensor_meta"].shape
            for a in n.all_input_nodes
            if isinstance(a.meta.get("tensor_meta"), TensorShape)
        ]
        got = f" on an input of shape {list(shapes[0])}" if shapes else ""
        return f"the model does not run at {h}x{w}: layer '{name}' ({kind}) failed{got}: {reason}"


class _OnMeta(fx.Interpreter):
    """Runs a traced model without computing anything: every tensor lives on the ``meta`` device.

    The model's own parameters stay where they are; each module is called through
    ``torch.func.functional_call`` with meta copies of its parameters and buffers, and shape-preserving
    modules (norms, activations) are skipped. At 224 px this turns the analysis of the 80 torchvision
    classifiers from about 20 s of real forward passes into a fraction of that. Ops without a meta kernel
    raise, and callers fall back to a real forward pass.
    """

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        module = self.fetch_attr(target)
        if isinstance(module, layers.SHAPE_PRESERVING_MODULES) and len(args) == 1 and not kwargs:
            return args[0]  # the shape is known, and meta batch norm alone costs ~4 ms a call
        state = {name: t.to("meta") for name, t in module.named_parameters()}
        state.update((name, t.to("meta")) for name, t in module.named_buffers())
        return torch.func.functional_call(module, state, tuple(args), dict(kwargs))


class _MetaShapeRecorder(_OnMeta, _ShapeRecorder):
    """Records shapes on the meta device."""


def _record_shapes(
    gm: fx.GraphModule, names: dict[fx.Node, str], example: torch.Tensor, size: tuple[int, int]
) -> None:
    """Fill ``node.meta["tensor_meta"]``, on the meta device if the model allows, else with a real forward."""
    with torch.no_grad():
        try:
            _MetaShapeRecorder(gm, names, size).run(example.to("meta"))
            return
        except Exception:  # an op without a meta kernel, or the model fails at this size: find out for real
            pass
        recorder = _ShapeRecorder(gm, names, size)
        try:
            recorder.run(example)
        except InputSizeError as err:
            hint = _working_size_hint(gm, example, size)
            raise InputSizeError(recorder.failure + hint) from err.__cause__


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
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, in_channels, *input_size, generator=generator).to(device=device, dtype=dtype)
    with eval_mode(model):
        gm, names = trace(model, leaf_classes=leaf_classes)
        _record_shapes(gm, names, example, input_size)
    return _to_layer_graph(gm, names, input_size)


_COMMON_SIZES = (32, 64, 96, 128, 224, 256, 299, 384, 512)


def _reason(err: Exception) -> str:
    """The error's own message on one line, without the notes fx appends ("While executing ...")."""
    text = str(err).split("\n\nWhile executing")[0]
    return " ".join(text.split()) or type(err).__name__


def _runs_at(gm: fx.GraphModule, example: torch.Tensor, size: int) -> bool:
    x = example.new_zeros(*example.shape[:2], size, size)
    # on meta first (cheap); a real forward decides when meta fails. Unlike gm(x), an Interpreter prints
    # nothing when the forward fails.
    for interpreter, value in ((_OnMeta(gm), x.to("meta")), (fx.Interpreter(gm), x)):
        try:
            interpreter.run(value)
        except Exception:
            continue
        return True
    return False


def _working_size_hint(gm: fx.GraphModule, example: torch.Tensor, input_size: tuple[int, int]) -> str:
    """Find a square input size the model runs at: the smallest above the failing one, or a common one.

    Larger sizes are tried first (a collapsing feature map needs a larger input); if one works, a bisection
    finds the smallest. Models that only run at one size (a fixed head, an asserted size) are found among
    the common training sizes.
    """
    failing = max(input_size)
    larger = [s for s in _COMMON_SIZES if s > failing]
    working = next((s for s in larger if _runs_at(gm, example, s)), None)
    if working is None:
        fixed = next((s for s in _COMMON_SIZES if s < failing and _runs_at(gm, example, s)), None)
        return f"; it runs at {fixed}x{fixed}" if fixed else ""
    low, high = failing, working  # low fails, high works
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _runs_at(gm, example, mid) else (mid, high)
    if _runs_at(gm, example, 2 * high):
        return (
            f"; the input is too small for the network: the smallest square input it runs at is {high}x{high}"
        )
    return f"; it runs at {high}x{high} but not at {2 * high}x{2 * high}: the model expects particular input sizes"


def _to_layer_graph(gm: fx.GraphModule, names: dict[fx.Node, str], input_size: tuple[int, int]) -> LayerGraph:
    graph = nx.DiGraph()
    env: dict[fx.Node, Any] = {}
    input_name = output_name = ""
    fx_names: dict[str, fx.Node] = {}
    for index, node in enumerate(gm.graph.nodes):
        if node.op == "placeholder":
            if input_name:
                continue  # extra placeholders are optional arguments, not image data
            env[node] = layouts.image_layout(_shape(node))
            effect = OpEffect("layout", layout=env[node])
            input_name = names[node]
        elif node.op == "get_attr":
            continue
        elif node.op == "output":
            effect = OpEffect("layout")
            output_name = "output"
            names[node] = output_name
        else:
            module = gm.get_submodule(node.target) if node.op == "call_module" else None
            ctx = OpContext(node, module, env)
            if not _depends_on_image(node, env):
                continue
            effect = layers.effect_of(ctx)
            if effect.layout is None:
                continue  # shape arithmetic (size(), dim(), asserts): no image data flows out
            env[node] = effect.layout
        name = names[node]
        fx_names[name] = node
        inputs = tuple(names[a] for a in node.all_input_nodes if a in env)
        graph.add_node(name, layer=_layer_node(gm, node, name, index, effect, inputs, env))
        for source in inputs:
            graph.add_edge(source, name)
    return LayerGraph(graph, input_size, input_name, output_name, gm, fx_names)


def _depends_on_image(node: fx.Node, env: dict[fx.Node, Any]) -> bool:
    return any(a in env for a in node.all_input_nodes)


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if isinstance(meta, (list, tuple)):
        meta = next((m for m in meta if isinstance(m, TensorShape)), None)
    return meta.shape if isinstance(meta, TensorShape) else None


def _spatial_size(layout: Any, shape: tuple[int, ...] | None) -> tuple[int, int] | None:
    """(H, W) of a tensor whose layout has one dim for height and one for width, else None."""
    if isinstance(layout, layers.Several):
        layout = next((part for part in layout if part), None)
    if not shape or not layout or len(layout) != len(shape):
        return None
    return layouts.spatial_size(layout, shape)


def _layer_node(
    gm: fx.GraphModule,
    node: fx.Node,
    name: str,
    index: int,
    effect: OpEffect,
    inputs: tuple[str, ...],
    env: dict[fx.Node, Any],
) -> LayerNode:
    first_input = next((a for a in node.all_input_nodes if a in env), None)
    input_shape = _shape(first_input) if first_input is not None else None
    output_shape = _shape(node)
    channels: dict[str, Any] = {}
    params: tuple[str, ...] = ()
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        type_name = type(module).__name__
        params = tuple(f"{node.target}.{p}" for p, _ in module.named_parameters())
        channels = _channels(module)
    elif node.op in ("call_function", "call_method"):
        type_name = layers.target_name(node)
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
        params=params,
        **channels,
    )


def _channels(module: nn.Module) -> dict[str, int]:
    if isinstance(module, nn.modules.conv._ConvNd):
        return {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "groups": module.groups,
        }
    if isinstance(module, nn.Linear):
        return {"in_channels": module.in_features, "out_channels": module.out_features}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return {"in_channels": module.num_features, "out_channels": module.num_features}
    return {}
