"""``remove-stem-downsampling``: let receptive fields grow slower by removing the stem's downsampling.

Paper 000 section V: "by removing the first two downsampling layers within the stem of ResNet18 and
ResNet34, receptive field sizes in the entire network are reduced by a factor of 4", which raises CIFAR-10
accuracy (84.61 -> 91.95 % for ResNet18) at the price of FLOPs (0.04 -> 0.56 GFLOPs). Dissertation 11.4
calls it strategy D2; the CIFAR ResNets do it by replacing the stem with one 3x3 stride-1 convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

from torch import nn

from rewriter import RewriteError
from rewriter.analysis import Analysis, Block, LayerNode, is_downsampling, stem
from rewriter.engine import (
    Context,
    DownsamplingEdits,
    Edit,
    Plan,
    Strategy,
    StrideChange,
    apply_downsampling_edits,
    check_replaceable,
    head_pooling,
    param,
    set_submodule,
    stride_text,
)


def _reason(node: LayerNode) -> str:
    factor = max(int(a.stride) for a in node.effect.axes if not a.unbounded)
    return f"stem downsampling: without it every later receptive field grows {factor}x slower (paper 000 V)"


@dataclass(frozen=True)
class CifarConv:
    """The 3x3 stride-1 conv that replaces the stem conv at ``path`` (mode cifar-stem)."""

    path: str
    in_channels: int
    out_channels: int
    bias: bool


@dataclass(frozen=True)
class StemEdits:
    """What ``apply`` changes: strides and Identity replacements (and the pooling that keeps a flattening
    head working), and the stem conv replaced in mode cifar-stem."""

    downsampling: DownsamplingEdits = field(default_factory=DownsamplingEdits)
    cifar_conv: CifarConv | None = None


def _with_pool_head(plan: Plan, pool_head: tuple[Edit, str] | None) -> Plan:
    """``plan`` plus the global pooling that keeps a flattening head working (none if the stem is kept)."""
    if pool_head is None or not plan.edits:
        return plan
    edit, path = pool_head
    downsampling = replace(plan.payload.downsampling, pool_after=(path,))
    return replace(plan, edits=(*plan.edits, edit), payload=replace(plan.payload, downsampling=downsampling))


@dataclass(frozen=True)
class RemoveStemDownsampling(Strategy):
    """Remove the stem's downsampling: receptive fields grow slower, FLOPs grow (paper 000 V, D2)."""

    name: ClassVar[str] = "remove-stem-downsampling"
    payload_type: ClassVar[type] = StemEdits
    search_order: ClassVar[int] = 10

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
        pool_head = self._guarded(head_pooling, model, analysis)
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
            self._guarded(check_replaceable, node, analysis)
            reason = _reason(node)
            if node.effect.category == "conv":
                strided.append(StrideChange(node.target, (1,) * len(node.effect.stride or (1, 1))))
                edits.append(
                    Edit("set", node.name, f"stride {stride_text(node)} -> 1 (weights kept)", reason)
                )
            else:
                identity.append(node.target)
                detail = f"{node.type} (stride {stride_text(node)}) -> Identity"
                edits.append(Edit("replace", node.name, detail, reason))
        payload = StemEdits(DownsamplingEdits(tuple(strided), tuple(identity)))
        return _with_pool_head(Plan(self.name, self.params(), tuple(edits), (where,), payload), pool_head)

    def _guarded(self, check, *args):
        """Run a shared check; its refusal is this strategy's."""
        try:
            return check(*args)
        except RewriteError as err:
            raise self.refuse(str(err)) from err

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
            self._guarded(check_replaceable, node, analysis)
        kernel = "x".join(map(str, conv.kernel_size))
        edits = [
            Edit(
                "replace",
                convs[0].name,
                f"Conv2d({conv.in_channels}, {conv.out_channels}, {kernel}, stride {stride_text(convs[0])}) -> "
                f"Conv2d({conv.in_channels}, {conv.out_channels}, 3, stride 1, padding 1) (new weights)",
                "the CIFAR ResNet stem (dissertation 9.4.1)",
            )
        ]
        edits += [
            Edit("replace", n.name, f"{n.type} (stride {stride_text(n)}) -> Identity", _reason(n))
            for n in pools
        ]
        payload = StemEdits(DownsamplingEdits(identity=tuple(n.target for n in pools)), cifar_conv=spec)
        return Plan(self.name, self.params(), tuple(edits), (where,), payload, new_modules=(spec.path,))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        edits: StemEdits = plan.payload
        apply_downsampling_edits(model, edits.downsampling)
        spec = edits.cifar_conv
        if spec is not None:
            old = model.get_submodule(spec.path)
            new = nn.Conv2d(spec.in_channels, spec.out_channels, 3, 1, 1, bias=spec.bias).to(old.weight)
            set_submodule(model, spec.path, new)
        return model
