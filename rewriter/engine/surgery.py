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
from ..analysis.modes import eval_mode
from ..analysis.tracing import trace


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
    graph.eliminate_dead_code()
    graph.lint()
    prefix = fx.GraphModule(model, graph, class_name=class_name)
    for name in list(prefix._modules):
        setattr(prefix, name, getattr(model, name))
    _prune_unused(prefix, graph)
    prefix.recompile()
    return prefix


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
