"""Trace once, analyze at many sizes: ``trace_model``, ``TracedModel.analyze`` and ``analyze``.

Tracing (torch.fx) depends only on the architecture; everything that depends on the size (shapes, each
op's effect, receptive fields, border layers, FLOPs) is recomputed per ``TracedModel.analyze`` call, on
the meta device. A ``TracedModel`` holds the GraphModule (which shares the model's submodules), never a
copy of a weight: it reads parameter shapes when it analyzes, so a model whose weights change between
calls is analyzed as it is then. A model whose structure changes (a module replaced) must be traced again.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from .._errors import AnalysisError
from . import flops_fvcore as metrics
from .analyzer import Analysis, as_size, build_analysis, resolve_leaf_classes
from .flops_meta import FLOP_BACKENDS
from .fx_tracer import trace
from .graph import graph_at
from .modes import eval_mode
from .receptive import BorderRule, field_pass
from .sizes import check_channels


@dataclass(frozen=True, eq=False)
class TracedModel:
    """A model traced once by torch.fx, ready to be analyzed at any input size.

    ``graph_module`` is the traced graph (its submodules are the model's own); ``names`` maps each fx node
    to its LayerGraph name. Analyses of one TracedModel run one at a time (the interpreter that propagates
    shapes walks the shared graph); a lock enforces it. Each ``Analysis`` holds its own values, what the shape
    pass recorded at its size included (beside the graph, never in the fx nodes' ``meta``); only the fx nodes
    its ``graph.fx_names`` points to are shared.
    """

    graph_module: fx.GraphModule = field(repr=False)
    names: Mapping[fx.Node, str] = field(repr=False)
    model: nn.Module = field(repr=False)
    in_channels: int = 3
    leaf_classes: tuple[type, ...] = ()
    name: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _modules: dict[str, nn.Module] = field(default_factory=dict, repr=False)  # the GraphModule's submodules
    _module_info: dict[str, dict] = field(default_factory=dict, repr=False)  # parameter names, channels

    def __post_init__(self) -> None:
        if not self._modules:
            self._modules.update(self.graph_module.named_modules())

    def layer_graph(self, input_size: int | Sequence[int], *, flops: bool = False):
        """The LayerGraph at ``input_size`` and, with ``flops``, its FLOP count (``flops.FlopCount``)."""
        size = as_size(input_size)
        with self._lock, eval_mode(self.model):
            return graph_at(
                self.graph_module,
                dict(self.names),
                size,
                in_channels=self.in_channels,
                count_flops=flops,
                modules=self._modules,
                module_info=self._module_info,
            )

    def analyze(
        self,
        input_size: int | Sequence[int],
        *,
        border_rule: BorderRule = "input",
        feature_size: int | Sequence[int] | None = None,
        flops: bool = True,
        name: str | None = None,
    ) -> Analysis:
        """Receptive fields, border layers and cost at ``input_size`` (``rewriter.analyze``'s record).

        FLOPs are counted on the meta device, in fvcore's convention (``flops_backend="meta"``).

        Example:
            >>> from rewriter.models.zoo import create_model
            >>> traced = trace_model(create_model("cifar_resnet18"))
            >>> [traced.analyze(size).border_layer_min for size in (8, 16, 32)]
            ['layer4.1.conv2', 'layer4.1.conv2', None]
        """
        size = as_size(input_size)
        limit = as_size(feature_size, "feature size") if feature_size is not None else None
        if border_rule not in ("input", "output"):
            raise AnalysisError(f"border rule must be 'input' or 'output', got {border_rule!r}")
        graph, count = self.layer_graph(size, flops=flops)
        return build_analysis(
            graph,
            field_pass(graph),
            model=self.model,
            border_rule=border_rule,
            feature_size=limit,
            flops=count,
            name=name or self.name,
        )


def trace_model(
    model: nn.Module, *, in_channels: int = 3, leaf_modules: Sequence[type | str] = ()
) -> TracedModel:
    """Trace ``model`` once (in eval mode; its flags are restored) for analyses at any input size.

    Args:
        model: the network; it is not modified and nothing of it is copied.
        in_channels: channels of the input image.
        leaf_modules: module classes (or class names) to treat as opaque when fx cannot trace them.

    Raises:
        TraceError: fx cannot trace the model; the message names the module and the remedy.
    """
    check_channels(in_channels)
    leaf_classes = resolve_leaf_classes(model, leaf_modules)
    with eval_mode(model):
        gm, names = trace(model, leaf_classes=leaf_classes)
    return TracedModel(gm, names, model, in_channels, leaf_classes, type(model).__name__)


def analyze(
    model: nn.Module,
    input_size: int | Sequence[int],
    *,
    border_rule: BorderRule = "input",
    feature_size: int | Sequence[int] | None = None,
    in_channels: int = 3,
    leaf_modules: Sequence[type | str] = (),
    flops: bool = True,
    flops_backend: str = "meta",
    name: str | None = None,
) -> Analysis:
    """Receptive fields, border layers and cost of ``model`` for inputs of ``input_size``.

    Args:
        model: the network; it is not modified (its training flags are restored after tracing).
        input_size: the training resolution, ``32`` or ``(height, width)``.
        border_rule: ``"input"`` tests the receptive field a layer's input is based on (r_{l-1} > i, the
            papers' definition); ``"output"`` tests the layer's own output, which reproduces the
            dissertation's ResNet b_min figures.
        feature_size: test against this size instead of the input (small objects; dissertation 9.5.2).
        in_channels: channels of the input image.
        leaf_modules: module classes (or class names) to treat as opaque when fx cannot trace them.
        flops: also count FLOPs (fvcore's convention).
        flops_backend: ``"meta"`` counts them in the shape pass on the meta device (no arithmetic);
            ``"fvcore"`` runs fvcore (a jit trace and a real forward pass), the reference.
        name: the model's name in reports; defaults to its class name.

    Example:
        >>> from rewriter.models.zoo import create_model
        >>> result = analyze(create_model("cifar_vgg11"), 32)
        >>> result.border_layer_min, result.flops_backend
        ('features.18', 'meta')
    """
    if flops_backend not in FLOP_BACKENDS:
        raise AnalysisError(f"FLOP backend must be one of {', '.join(FLOP_BACKENDS)}, got {flops_backend!r}")
    traced = trace_model(model, in_channels=in_channels, leaf_modules=leaf_modules)
    meta = flops and flops_backend == "meta"
    result = traced.analyze(
        input_size, border_rule=border_rule, feature_size=feature_size, flops=meta, name=name
    )
    if not flops or meta:
        return result
    cost = metrics.count_flops(model, result.input_size, in_channels=in_channels)
    return dataclasses.replace(
        result,
        flops=cost.flops,
        flops_skipped_ops=cost.skipped_ops,
        flops_backend="fvcore",
        flops_by_operator=cost.by_operator,
        flops_by_module=cost.by_module,
        flops_by_node=(),
    )
