"""``remove-stem-downsampling``: let receptive fields grow slower by removing the stem's downsampling.

Paper 000 section V: "by removing the first two downsampling layers within the stem of ResNet18 and
ResNet34, receptive field sizes in the entire network are reduced by a factor of 4", which raises CIFAR-10
accuracy (84.61 -> 91.95 % for ResNet18) at the price of FLOPs (0.04 -> 0.56 GFLOPs). Dissertation 11.4
calls it strategy D2; the CIFAR ResNets do it by replacing the stem with one 3x3 stride-1 convolution.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

from torch import nn

from rewriter.analysis import Analysis, Block, LayerNode, is_downsampling, stem
from rewriter.engine import Context, Edit, Plan, Strategy, param, set_submodule


def _reason(node: LayerNode) -> str:
    factor = max(int(a.stride) for a in node.effect.axes if not a.unbounded)
    return f"stem downsampling: without it every later receptive field grows {factor}x slower (paper 000 V)"


def fixed_size_head(analysis: Analysis) -> tuple[str, str] | None:
    """A Linear that reads flattened positions whose number is not fixed by adaptive pooling.

    Returns ``(linear, source)``: the head and the layer that sets the size of what it flattens.
    """
    graph = analysis.graph
    for node in graph:
        if node.effect.category != "linear" or not node.effect.is_global:
            continue
        if any(r == float("inf") for r in analysis.fields[node.name].input.min):
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


@dataclass(frozen=True)
class CifarConv:
    """The 3x3 stride-1 conv that replaces the stem conv at ``path`` (mode cifar-stem)."""

    path: str
    in_channels: int
    out_channels: int
    bias: bool


@dataclass(frozen=True)
class StemEdits:
    """What ``apply`` changes: convs set to stride 1, modules replaced by Identity, pools followed by global
    pooling, and the stem conv replaced in mode cifar-stem."""

    stride_1: tuple[str, ...] = ()
    identity: tuple[str, ...] = ()
    pool_after: tuple[str, ...] = ()
    cifar_conv: CifarConv | None = None


def _with_pool_head(plan: Plan, pool_head: tuple[Edit, str] | None) -> Plan:
    """``plan`` plus the global pooling that keeps a flattening head working (none if the stem is kept)."""
    if pool_head is None or not plan.edits:
        return plan
    edit, path = pool_head
    return replace(plan, edits=(*plan.edits, edit), payload=replace(plan.payload, pool_after=(path,)))


def _stride_text(node: LayerNode) -> str:
    return "x".join(str(s) for s in node.effect.stride or ())


@dataclass(frozen=True)
class RemoveStemDownsampling(Strategy):
    """Remove the stem's downsampling: receptive fields grow slower, FLOPs grow (paper 000 V, D2)."""

    name: ClassVar[str] = "remove-stem-downsampling"
    payload_type: ClassVar[type] = StemEdits

    mode: Literal["strides", "cifar-stem"] = param(
        "strides",
        help="strides: strided stem convs get stride 1 and stem pools become Identity, weights kept; "
        "cifar-stem: the stem conv becomes one new 3x3 stride-1 conv, stem pools become Identity",
    )
    count: int | None = param(
        None,
        help="remove at most this many downsamplings, first ones first (strides)",
        low=1,
        high=64,
        search=(None, 1),
    )

    def plan(self, model: nn.Module, context: Context) -> Plan:
        analysis = context.analysis
        pool_head = self._global_pool_head(model, analysis)
        layers, blocks = stem(model, analysis.graph)
        where = self._stem_note(blocks, layers)
        if self.mode == "cifar-stem":
            return _with_pool_head(self._plan_cifar_stem(model, analysis, layers, where), pool_head)
        downsampling = [n for n in layers if is_downsampling(n)][: self.count]
        if not downsampling:
            return Plan(
                self.name, self.params(), notes=(where, "the stem does not downsample: nothing to remove")
            )
        edits, strided, identity = [], [], []
        for node in downsampling:
            self._check_replaceable(node, analysis)
            reason = _reason(node)
            if node.effect.category == "conv":
                strided.append(node.target)
                edits.append(
                    Edit("set", node.name, f"stride {_stride_text(node)} -> 1 (weights kept)", reason)
                )
            else:
                identity.append(node.target)
                detail = f"{node.type} (stride {_stride_text(node)}) -> Identity"
                edits.append(Edit("replace", node.name, detail, reason))
        payload = StemEdits(stride_1=tuple(strided), identity=tuple(identity))
        return _with_pool_head(Plan(self.name, self.params(), tuple(edits), (where,), payload), pool_head)

    def _global_pool_head(self, model: nn.Module, analysis: Analysis) -> tuple[Edit, str] | None:
        """A head that flattens a fixed-size map breaks when the map grows. When that map is 1x1 and made by
        a parameter-free module (VGG's last max-pool), global average pooling after that module is exact at
        this resolution and keeps the head working at any other: return that edit. Otherwise refuse."""
        head = fixed_size_head(analysis)
        if head is None:
            return None
        linear, source = head
        node = analysis.graph[source]
        size = node.output_size or ()
        module = model.get_submodule(node.target) if node.is_module else None
        if size and all(s == 1 for s in size) and module is not None and not any(module.parameters()):
            self._check_replaceable(node, analysis)
            edit = Edit(
                "replace", node.name, f"{node.type} -> {node.type} + AdaptiveAvgPool2d(1)",
                f"the head '{linear}' flattens its 1x1 output: global pooling is exact at this resolution and "
                "keeps the head's input 1x1 when the maps grow",
            )  # fmt: skip
            return edit, node.target
        raise self.refuse(
            f"the head '{linear}' reads a flattened feature map of fixed size ({'x'.join(map(str, size))} "
            f"from '{source}'); removing downsampling changes that size and would break it. Truncate first "
            "(it attaches a global-pooling head) or use a model with adaptive pooling"
        )

    def _check_replaceable(self, node: LayerNode, analysis: Analysis) -> None:
        """The layer must be a module that runs once: changing a shared module changes all its calls."""
        if not node.is_module:
            raise self.refuse(
                f"'{node.name}' is a functional {node.type} call: wrap it in a module to remove it"
            )
        calls = [n.name for n in analysis.graph if n.is_module and n.target == node.target]
        if len(calls) > 1:
            raise self.refuse(
                f"module '{node.target}' runs {len(calls)} times ({', '.join(calls)}); changing it would remove "
                "the downsampling of every call, not only the stem's"
            )

    def _stem_note(self, blocks: list[Block], layers: list[LayerNode]) -> str:
        names = ", ".join(n.name for n in layers) or "none"
        if blocks:
            return (
                f"the stem is what runs before the first block '{blocks[0].name}' ({blocks[0].type}): {names}"
            )
        return (
            f"no repeated block (a plain stack of layers): the stem is up to the first downsampling: {names}"
        )

    def _plan_cifar_stem(
        self, model: nn.Module, analysis: Analysis, layers: list[LayerNode], where: str
    ) -> Plan:
        if self.count is not None:
            raise self.refuse("count applies to mode 'strides'; mode 'cifar-stem' replaces the whole stem")
        convs = [n for n in layers if n.effect.category == "conv"]
        if len(convs) != 1 or not convs[0].is_module:
            raise self.refuse(
                f"mode 'cifar-stem' needs a stem with exactly one conv module, this one has {len(convs)}; "
                "use mode 'strides'"
            )
        conv = model.get_submodule(convs[0].target)
        spec = CifarConv(convs[0].target, conv.in_channels, conv.out_channels, conv.bias is not None)
        pools = [n for n in layers if n.effect.category == "pool" and is_downsampling(n)]
        for node in [*convs, *pools]:
            self._check_replaceable(node, analysis)
        kernel = "x".join(map(str, conv.kernel_size))
        edits = [
            Edit(
                "replace",
                convs[0].name,
                f"Conv2d({conv.in_channels}, {conv.out_channels}, {kernel}, stride {_stride_text(convs[0])}) -> "
                f"Conv2d({conv.in_channels}, {conv.out_channels}, 3, stride 1, padding 1) (new weights)",
                "the CIFAR ResNet stem (dissertation 9.4.1)",
            )
        ]
        edits += [
            Edit("replace", n.name, f"{n.type} (stride {_stride_text(n)}) -> Identity", _reason(n))
            for n in pools
        ]
        payload = StemEdits(identity=tuple(n.target for n in pools), cifar_conv=spec)
        return Plan(self.name, self.params(), tuple(edits), (where,), payload, new_modules=(spec.path,))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        edits: StemEdits = plan.payload
        for path in edits.stride_1:
            conv = model.get_submodule(path)
            conv.stride = (1,) * len(conv.stride)
        for path in edits.identity:
            set_submodule(model, path, nn.Identity())
        for path in edits.pool_after:
            set_submodule(model, path, nn.Sequential(model.get_submodule(path), nn.AdaptiveAvgPool2d(1)))
        spec = edits.cifar_conv
        if spec is not None:
            old = model.get_submodule(spec.path)
            new = nn.Conv2d(spec.in_channels, spec.out_channels, 3, 1, 1, bias=spec.bias).to(old.weight)
            set_submodule(model, spec.path, new)
        return model
