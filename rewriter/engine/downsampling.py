"""Edits that change where a network downsamples, shared by the strategies that remove or move it.

Setting a conv's stride, replacing a pooling layer by Identity (or giving it a stride), inserting a pooling
layer after a module, and keeping a head that flattens a fixed-size map working when the maps change
size. A layer must be a module that runs once: changing a shared module would change every call of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from .._errors import RewriteError
from ..analysis.analyzer import Analysis
from ..analysis.graph import LayerNode
from ..analysis.heads import fixed_size_head
from .plan import Edit
from .surgery import set_submodule


@dataclass(frozen=True)
class StrideChange:
    """The module at ``path`` gets stride ``stride`` (one value per axis)."""

    path: str
    stride: tuple[int, ...]


@dataclass(frozen=True)
class PoolSpec:
    """A pooling layer as plain data (what a plan records and ``apply`` builds)."""

    kind: Literal["max", "avg"]
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] = (0, 0)
    ceil_mode: bool = False

    def build(self) -> nn.Module:
        cls = nn.MaxPool2d if self.kind == "max" else nn.AvgPool2d
        return cls(self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)

    def text(self) -> str:
        name = "MaxPool2d" if self.kind == "max" else "AvgPool2d"
        pad = f", padding {'x'.join(map(str, self.padding))}" if any(self.padding) else ""
        return (
            f"{name}({'x'.join(map(str, self.kernel_size))}, stride {'x'.join(map(str, self.stride))}{pad})"
        )

    @classmethod
    def of(cls, module: nn.Module) -> PoolSpec | None:
        """The spec of a plain ``MaxPool2d`` or ``AvgPool2d`` (None for any other module)."""
        if type(module) is nn.MaxPool2d and _pair(module.dilation) == (1, 1):
            kind = "max"
        elif type(module) is nn.AvgPool2d and module.count_include_pad and module.divisor_override is None:
            kind = "avg"
        else:
            return None
        return cls(
            kind, _pair(module.kernel_size), _pair(module.stride), _pair(module.padding), module.ceil_mode
        )


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # type: ignore[return-value]


@dataclass(frozen=True)
class Insertion:
    """``pool`` runs right after the module at ``after``, which becomes ``Sequential(module, pool)``: the
    module's tensors move from ``after.*`` to ``after.0.*`` (a plan declares that with ``Moved``)."""

    after: str
    pool: PoolSpec


@dataclass(frozen=True)
class DownsamplingEdits:
    """What ``apply_downsampling_edits`` changes: convs and pools whose stride is set, modules replaced by
    Identity, parameter-free modules followed by global average pooling (a flattening head's input), and
    pooling layers inserted after modules."""

    strides: tuple[StrideChange, ...] = ()
    identity: tuple[str, ...] = ()
    pool_after: tuple[str, ...] = ()
    insertions: tuple[Insertion, ...] = ()


def stride_text(node: LayerNode) -> str:
    return "x".join(str(s) for s in node.effect.stride or ())


def check_replaceable(node: LayerNode, analysis: Analysis) -> None:
    """The layer must be a module that runs once: changing a shared module changes all its calls.

    Raises:
        RewriteError: a functional call, or a module that runs more than once.
    """
    if not node.is_module:
        raise RewriteError(
            f"'{node.name}' is a functional {node.type} call: wrap it in a module to change it"
        )
    calls = [n.name for n in analysis.graph if n.is_module and n.target == node.target]
    if len(calls) > 1:
        raise RewriteError(
            f"module '{node.target}' runs {len(calls)} times ({', '.join(calls)}); changing it would change "
            "the downsampling of every call, not only this one"
        )


def head_pooling(model: nn.Module, analysis: Analysis) -> tuple[Edit, str] | None:
    """A head that flattens a fixed-size map breaks when the map changes size. When that map is 1x1 and made
    by a parameter-free module (VGG's last max-pool), global average pooling after that module is exact at
    this resolution and keeps the head working at any other: return that edit and the module's path.

    Raises:
        RewriteError: the head flattens a larger fixed-size map (the reason, and what to do instead).
    """
    head = fixed_size_head(analysis.graph, analysis.fields)
    if head is None:
        return None
    linear, source = head
    node = analysis.graph[source]
    size = node.output_size or ()
    module = model.get_submodule(node.target) if node.is_module else None
    if size and all(s == 1 for s in size) and module is not None and not any(module.parameters()):
        check_replaceable(node, analysis)
        edit = Edit(
            "replace", node.name, f"{node.type} -> {node.type} + AdaptiveAvgPool2d(1)",
            f"the head '{linear}' flattens its 1x1 output: global pooling is exact at this resolution and keeps "
            "the head's input 1x1 when the maps grow",
        )  # fmt: skip
        return edit, node.target
    shape = analysis.graph[linear].output_shape or ()
    if len(shape) != 2:  # not a classifier: a layer that mixes tokens (MLP-Mixer's token MLP)
        raise RewriteError(
            f"the layer '{linear}' mixes a fixed number of positions ({'x'.join(map(str, size))} from "
            f"'{source}'), as token-mixing layers do; changing the downsampling changes that number and would "
            "break it"
        )
    raise RewriteError(
        f"the head '{linear}' reads a flattened feature map of fixed size ({'x'.join(map(str, size))} from "
        f"'{source}'); changing the downsampling changes that size and would break it. Truncate first (it "
        "attaches a global-pooling head) or use a model with adaptive pooling"
    )


def apply_downsampling_edits(model: nn.Module, edits: DownsamplingEdits) -> None:
    """Change ``model`` (the pipeline's copy) in place as ``edits`` say."""
    for change in edits.strides:
        module = model.get_submodule(change.path)
        if isinstance(module, nn.modules.conv._ConvNd):
            module.stride = tuple(change.stride)
        else:  # a pooling layer
            module.stride = change.stride if len(set(change.stride)) > 1 else change.stride[0]
    for path in edits.identity:
        set_submodule(model, path, nn.Identity())
    for path in edits.pool_after:
        set_submodule(model, path, nn.Sequential(model.get_submodule(path), nn.AdaptiveAvgPool2d(1)))
    for insertion in edits.insertions:
        inner = model.get_submodule(insertion.after)
        pool = insertion.pool.build()
        reference = next(iter(inner.state_dict().values()), None)
        pool = pool if reference is None else pool.to(reference.device)
        set_submodule(model, insertion.after, nn.Sequential(inner, pool))
