"""Model surgery for strategies: cut a traced model at a node, replace submodules, find cut points.

Everything here works on a model the caller owns (the pipeline's copy); nothing is deep-copied here.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch.fx as fx
from torch import nn

from .._errors import RewriteError
from ..analysis.fx_tracer import live_nodes, trace
from ..analysis.modes import eval_mode
from .plan import Moved


def training_dependent_classes(model: nn.Module) -> tuple[type, ...]:
    """Classes of childless modules whose ``forward`` reads ``self.training`` (dropout-like layers)."""
    found = set()
    for module in model.modules():
        cls = type(module)
        if cls in found or next(module.children(), None) is not None or cls.__module__.startswith("torch.nn"):
            continue
        try:
            source = inspect.getsource(cls.forward)
        except (OSError, TypeError):
            continue
        if "self.training" in source:
            found.add(cls)
    return tuple(found)


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (``layer1.0.conv1``) by ``module``."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def extract_prefix(
    model: nn.Module, cut: str, *, leaf_classes: Sequence[type] = (), class_name: str = "Features"
) -> fx.GraphModule:
    """A GraphModule computing the tensor of node ``cut`` (a LayerGraph name) from ``model``'s input.

    The model is traced in eval mode, as the analysis was, but modules without children that read
    ``self.training`` in ``forward`` (stochastic depth, drop path, custom dropout) stay modules, so they still
    switch between training and inference behaviour: traced through, their flag would be frozen. The original
    top-level submodules are kept, so block classes survive (``layer3`` stays a Sequential of BasicBlocks),
    and every submodule the cut graph no longer uses is removed.
    """
    with eval_mode(model):
        gm, names = trace(model, leaf_classes=(*leaf_classes, *training_dependent_classes(model)))
    by_name = {name: node for node, name in names.items()}
    if cut not in by_name:
        raise RewriteError(f"cannot cut at '{cut}': no such node in the traced model")
    graph = gm.graph
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (by_name[cut],)
    _drop_dead_checks(graph, output)
    graph.eliminate_dead_code()
    graph.lint()
    prefix = fx.GraphModule(model, graph, class_name=class_name)
    for name in list(prefix._modules):
        setattr(prefix, name, getattr(model, name))
    _prune_unused(prefix, graph)
    prefix.recompile()
    return prefix


def _is_check(node: fx.Node) -> bool:
    """A call whose only purpose is checking (``torch._assert``, ``torch._check...``): it returns nothing."""
    name = getattr(node.target, "__name__", "") if node.op == "call_function" else ""
    return name.startswith(("_assert", "_check"))


def _drop_dead_checks(graph: fx.Graph, output: fx.Node) -> None:
    """Remove checks on values the cut output does not need. fx keeps calls with side effects, so an assert
    on a removed block's tensor (SelectiveKernel's ``_assert(x.shape[1] == self.num_paths)``) would keep that
    block alive in the prefix: dead code that still runs, and whose FLOPs the report would count."""
    live = live_nodes(output)
    for node in reversed(list(graph.nodes)):
        if node not in live and _is_check(node) and not node.users:
            graph.erase_node(node)


class Inlined(nn.Module):
    """Holds the submodules of a traced module whose code now lives in its parent's graph.

    Cutting a model that already holds a GraphModule (a model rewritten before) traces through it; its
    submodules stay where they were, so their names and weights carry over, but its own code, which still
    calls the pruned tail, must not be kept: a GraphModule whose code names missing modules cannot even be
    copied.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self._modules.update(source._modules)
        self._parameters.update(source._parameters)
        self._buffers.update(source._buffers)
        self.training = source.training

    def forward(self, *args, **kwargs):
        raise RuntimeError("an Inlined container only holds submodules; its parent's code calls them")


def _prune_unused(root: nn.Module, graph: fx.Graph) -> None:
    used = {str(n.target) for n in graph.nodes if n.op in ("call_module", "get_attr")}
    for path, module in list(root.named_modules()):
        if path and path not in used and isinstance(module, fx.GraphModule):
            set_submodule(root, path, Inlined(module))

    def needed(path: str) -> bool:  # used, an ancestor of something used, or inside a used leaf module
        return any(u == path or u.startswith(path + ".") or path.startswith(u + ".") for u in used)

    for path, _ in sorted(root.named_modules(), key=lambda item: -item[0].count(".")):
        if path and not needed(path):
            parent_path, _, name = path.rpartition(".")
            parent = root.get_submodule(parent_path) if parent_path else root
            if name in parent._modules:
                del parent._modules[name]


def fresh_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with newly initialised parameters and reset batch-norm statistics."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return clone


# --------------------------------------------------------------------------------------------------
# removing modules from and inserting modules into nn.Sequential containers


def _sequence_orders(
    model: nn.Module, removals: set[str], counts: dict[str, int]
) -> dict[str, list[str | None]]:
    """Per edited container: the module paths it will hold, in order (None for each inserted module)."""
    orders = {}
    for path in sorted({p.rpartition(".")[0] for p in removals | set(counts)}):
        container = model.get_submodule(path) if path else model
        order: list[str | None] = []
        for name in container._modules:
            full = f"{path}.{name}" if path else name
            if full not in removals:
                order.append(full)
            order.extend([None] * counts.get(full, 0))
        orders[path] = order
    return orders


def _sequence_names(container: nn.Module, order: list[str | None]) -> list[tuple[str, str | None]]:
    """(new name, old path) for each entry of a rebuilt container; integer names are renumbered."""
    numbered = all(name.isdigit() for name in container._modules)
    return [
        (str(i) if numbered else (old.rpartition(".")[2] if old else f"added{i}"), old)
        for i, old in enumerate(order)
    ]


def sequence_changes(
    model: nn.Module, removals: set[str], counts: dict[str, int]
) -> tuple[list[Moved], list[str]]:
    """What ``resequence`` would do, for a plan: the kept modules a renumbered container moves, and the
    paths of the inserted ones (``counts``: how many modules go in after each path).

    Raises:
        ValueError: a module to remove or insert after is not held in an ``nn.Sequential``.
    """
    moved, fresh = [], []
    for path, order in _sequence_orders(model, removals, counts).items():
        container = model.get_submodule(path) if path else model
        if not isinstance(container, nn.Sequential):
            raise ValueError(
                f"the units of '{path or type(model).__name__}' are not held in an nn.Sequential"
            )
        for name, old in _sequence_names(container, order):
            new = f"{path}.{name}" if path else name
            if old is None:
                fresh.append(new)
            elif old != new:
                moved.append(Moved(new + ".", old + "."))
    return moved, fresh


def resequence(model: nn.Module, removals: set[str], insertions: dict[str, list[nn.Module]]) -> None:
    """Remove the modules at ``removals`` and insert ``insertions[path]`` after each path, in the
    ``nn.Sequential`` containers that hold them (integer names renumbered)."""
    counts = {after: len(group) for after, group in insertions.items()}
    for path, order in _sequence_orders(model, removals, counts).items():
        container = model.get_submodule(path) if path else model
        pending = {after: iter(group) for after, group in insertions.items()}
        modules, last = [], None
        for old in order:
            if old is not None:
                last = old
            modules.append(model.get_submodule(old) if old is not None else next(pending[last]))
        names = _sequence_names(container, order)
        container._modules.clear()
        for (name, _), module in zip(names, modules, strict=True):
            container._modules[name] = module


# --------------------------------------------------------------------------------------------------
# a unit at another input width


def _stride_one(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            m.stride = (1,) * len(m.stride)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            m.stride = 1


def _retarget_conv(conv: nn.Conv2d, width: int, *, depthwise: bool) -> nn.Conv2d:
    out_channels = width if depthwise else conv.out_channels
    return nn.Conv2d(
        width,
        out_channels,
        conv.kernel_size,
        1,
        conv.padding,
        conv.dilation,
        groups=width if depthwise else conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight)


def adapt_input_width(unit: nn.Module, width: int) -> nn.Module:
    """Make a unit (a block, or a conv) read ``width`` channels, in place: every conv and norm the unit's input
    reaches before a channel-mixing conv is rebuilt for the new width (depthwise convs pass it on), its
    strides become 1, and a residual block's shortcut becomes the identity. Used to append a stride-1,
    width-preserving copy of a stage's first unit (paper 003's organizer)."""
    _stride_one(unit)
    if isinstance(unit, nn.Conv2d):  # a plain net's unit: the conv itself
        return _retarget_conv(unit, width, depthwise=unit.groups == unit.in_channels == unit.out_channels)
    gm, _ = trace(unit)
    reached: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            reached.add(node)
            continue
        if not any(a in reached for a in node.all_input_nodes):
            continue
        if node.op != "call_module":
            reached.add(node)
            continue
        module = unit.get_submodule(node.target)
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups == module.in_channels == module.out_channels
            set_submodule(unit, node.target, _retarget_conv(module, width, depthwise=depthwise))
            if depthwise:
                reached.add(node)
        elif isinstance(module, nn.BatchNorm2d):
            set_submodule(unit, node.target, nn.BatchNorm2d(width).to(module.weight))
            reached.add(node)
        else:
            reached.add(node)
    if getattr(unit, "downsample", None) is not None:  # torchvision/timm residual blocks: identity shortcut
        unit.downsample = None
    if hasattr(
        unit, "use_res_connect"
    ):  # torchvision MobileNetV2: a stride-1 same-width block adds its input
        unit.use_res_connect = True
    return unit
