"""``decompose-kernels``: paper 003's kernel-level decomposer.

Standard k x k convolutions (stride 1, one group) are replaced by a depthwise k x k convolution followed by
a pointwise (PW), group pointwise (GPW) or rolling pointwise (RPW) convolution. The Rule of Kernel
Replacement is checked and reported: *quality*, the block sees the same Information Field as the kernel it
replaces (spatially k, and every input channel); *compact*, removing either factorized kernel loses IF.
DW+PW satisfies both for every kernel. DW+GPW and DW+RPW see ``c_in / g`` channels per kernel; stacked,
RPW's overlapping windows widen the channel field until it covers every channel (paper 003 Fig. 4), GPW's
groups never do. The report gives, per stage, the channel field after each decomposed kernel.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from rewriter.analysis import elementwise_rule, find_stages, register_module_rule
from rewriter.engine import Context, Edit, Plan, Strategy, param, set_submodule

Block = Literal["dw-pw", "dw-gpw", "dw-rpw"]


class RollingPointwise(nn.Module):
    """Rolling pointwise convolution (RPW, paper 003 Fig. 4): a 1x1 convolution whose filters each read
    ``in_channels / groups`` consecutive input channels; the windows of neighbouring filter groups overlap by
    ``overlap`` of their width and roll around the channel axis.

    The windows start every ``step = window * (1 - overlap)`` channels; the input channels are gathered
    window after window and a grouped 1x1 convolution applies ``out_channels / windows`` filters to each, so
    each filter has ``in_channels / groups`` weights, as the paper's construction implies.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, groups: int = 2, overlap: float = 0.5, bias: bool = True
    ) -> None:
        super().__init__()
        if groups < 1 or in_channels % groups:
            raise ValueError(f"in_channels {in_channels} is not divisible into {groups} groups")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        window = in_channels // groups
        step = round(window * (1 - overlap))
        if step < 1 or in_channels % step:
            raise ValueError(f"a step of {step} channels does not tile {in_channels} channels")
        windows = in_channels // step
        if out_channels % windows:
            raise ValueError(f"out_channels {out_channels} is not a multiple of the {windows} windows")
        self.in_channels, self.out_channels, self.groups, self.overlap = (
            in_channels,
            out_channels,
            groups,
            overlap,
        )
        self.window, self.step, self.windows = window, step, windows
        index = [(j * step + i) % in_channels for j in range(windows) for i in range(window)]
        self.register_buffer("index", torch.tensor(index), persistent=False)
        self.conv = nn.Conv2d(windows * window, out_channels, 1, groups=windows, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.index_select(1, self.index))

    def reads(self, channel: int) -> list[int]:
        """The input channels output ``channel`` reads."""
        start = (channel // (self.out_channels // self.windows)) * self.step
        return [(start + i) % self.in_channels for i in range(self.window)]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}, overlap={self.overlap}"


register_module_rule(RollingPointwise)(elementwise_rule)  # per position, like any 1x1 convolution


@dataclass(frozen=True)
class Decomposition:
    """The conv modules ``apply`` replaces by a depthwise + pointwise pair."""

    layers: tuple[str, ...]


class FactorizedConv(nn.Sequential):
    """A depthwise k x k convolution, optionally batch norm and ReLU, then a (group/rolling) pointwise one."""


def _pointwise(block: Block, cin: int, cout: int, *, groups: int, overlap: float, bias: bool) -> nn.Module:
    if block == "dw-pw":
        return nn.Conv2d(cin, cout, 1, bias=bias)
    if block == "dw-gpw":
        return nn.Conv2d(cin, cout, 1, groups=groups, bias=bias)
    return RollingPointwise(cin, cout, groups=groups, overlap=overlap, bias=bias)


def _reads(block: Block, cin: int, cout: int, *, groups: int, overlap: float) -> list[list[int]]:
    """For each output channel of the pointwise part, the input channels it reads."""
    if block == "dw-pw":
        return [list(range(cin))] * cout
    if block == "dw-gpw":
        per_in, per_out = cin // groups, cout // groups
        return [list(range((f // per_out) * per_in, (f // per_out + 1) * per_in)) for f in range(cout)]
    rpw = RollingPointwise(cin, cout, groups=groups, overlap=overlap)
    return [rpw.reads(f) for f in range(cout)]


def channel_fields(block: Block, widths: list[tuple[int, int]], *, groups: int, overlap: float) -> list[int]:
    """The fewest stage-input channels any neuron sees after each of a chain of decomposed kernels."""
    seen = [1 << c for c in range(widths[0][0])]  # each input channel sees itself (a bitmask per channel)
    fields = []
    for cin, cout in widths:
        seen = [
            _union(seen, channels) for channels in _reads(block, cin, cout, groups=groups, overlap=overlap)
        ]
        fields.append(min(bin(mask).count("1") for mask in seen))
    return fields


def _union(seen: list[int], channels: list[int]) -> int:
    mask = 0
    for c in channels:
        mask |= seen[c]
    return mask


@dataclass(frozen=True)
class DecomposeKernels(Strategy):
    """Replace standard kxk convolutions by DW + PW/GPW/RPW blocks (paper 003, kernel-level decomposer)."""

    name: ClassVar[str] = "decompose-kernels"
    payload_type: ClassVar[type] = Decomposition

    block: Block = param(
        "dw-pw", help="dw-pw (MobileNet), dw-gpw (grouped pointwise) or dw-rpw (rolling pointwise)"
    )
    groups: int = param(
        2, help="g: each pointwise filter reads in_channels / g channels (dw-gpw, dw-rpw)", low=1, high=4096
    )
    overlap: float = param(0.5, help="o: overlap of neighbouring rolling windows (dw-rpw)", low=0, high=0.99)
    layers: str = param("*", help="decompose the eligible convs whose names match this shell pattern")
    norm: bool = param(True, help="batch norm and ReLU between the depthwise and the pointwise conv")

    def _eligible(self, model: nn.Module, context: Context) -> tuple[list, list[str]]:
        graph = context.analysis.graph
        calls: dict[str, int] = {}
        for node in graph:
            if node.is_module:
                calls[node.target] = calls.get(node.target, 0) + 1
        chosen, skipped = [], []
        for node in graph:
            if not node.is_module or not fnmatch.fnmatchcase(node.name, self.layers):
                continue
            conv = model.get_submodule(node.target)
            if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or all(k == 1 for k in conv.kernel_size):
                continue
            if any(s != 1 for s in conv.stride) or calls[node.target] > 1:
                skipped.append(f"{node.name} (stride {tuple(conv.stride)} or shared)")
                continue
            try:
                _pointwise(
                    self.block,
                    conv.in_channels,
                    conv.out_channels,
                    groups=self.groups,
                    overlap=self.overlap,
                    bias=False,
                )
                if self.block == "dw-gpw" and conv.out_channels % self.groups:
                    raise ValueError(
                        f"out_channels {conv.out_channels} is not divisible into {self.groups} groups"
                    )
            except ValueError as err:
                skipped.append(f"{node.name} ({err})")
                continue
            chosen.append((node, conv))
        return chosen, skipped

    def plan(self, model: nn.Module, context: Context) -> Plan:
        chosen, skipped = self._eligible(model, context)
        if not chosen:
            raise self.refuse(
                f"no standard conv (stride 1, one group, kernel > 1) matches '{self.layers}'"
                + (f"; skipped: {', '.join(skipped[:4])}" if skipped else "")
            )
        label = self.block.upper().replace("-", "+") + ("" if self.block == "dw-pw" else f"-g{self.groups}")
        label += f"-o{round(self.overlap * 100)}%" if self.block == "dw-rpw" else ""
        edits = []
        for node, conv in chosen:
            k = "x".join(map(str, conv.kernel_size))
            per_kernel = channel_fields(
                self.block, [(conv.in_channels, conv.out_channels)], groups=self.groups, overlap=self.overlap
            )[0]
            quality = (
                "holds" if per_kernel == conv.in_channels else f"fails for one kernel ({per_kernel} channels)"
            )
            edits.append(
                Edit(
                    "replace",
                    node.name,
                    f"Conv2d({conv.in_channels}, {conv.out_channels}, {k}) -> DW {k} + {label.split('+')[1]}",
                    f"Rule of Kernel Replacement: quality {quality}; compact holds (without the DW the spatial field "
                    f"drops from {conv.kernel_size[0]} to 1, without the pointwise the channel field drops to 1)",
                )
            )
        notes = [*self._stage_notes(model, context, chosen, label)]
        if skipped:
            notes.append("not decomposed: " + ", ".join(skipped))
        layers = tuple(node.target for node, _ in chosen)
        return Plan(
            self.name, self.params(), tuple(edits), tuple(notes), Decomposition(layers), new_modules=layers
        )

    def _stage_notes(self, model: nn.Module, context: Context, chosen: list, label: str) -> list[str]:
        """Quality over each stage's chain of decomposed kernels, where stacking can restore the channel field."""
        names = {node.name: conv for node, conv in chosen}
        notes = []
        for stage in find_stages(model, context.analysis.graph):
            convs = [names[u.name] for u in stage.units if u.name in names]
            if not convs:
                continue
            fields = channel_fields(
                self.block,
                [(c.in_channels, c.out_channels) for c in convs],
                groups=self.groups,
                overlap=self.overlap,
            )
            full = convs[0].in_channels
            first_full = next((i + 1 for i, f in enumerate(fields) if f >= full), None)
            verdict = (
                f"quality holds from kernel {first_full} on"
                if first_full
                else "quality never holds in this stage"
            )
            notes.append(
                f"stage {stage.index}: {label}, channel field after each of its {len(convs)} decomposed kernels: "
                f"{', '.join(map(str, fields))} of the {full} channels a standard kernel sees: {verdict}"
            )
        return notes

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        for path in plan.payload.layers:
            conv = model.get_submodule(path)
            parts: OrderedDict[str, nn.Module] = OrderedDict(
                dw=nn.Conv2d(
                    conv.in_channels,
                    conv.in_channels,
                    conv.kernel_size,
                    1,
                    conv.padding,
                    conv.dilation,
                    groups=conv.in_channels,
                    bias=False,
                    padding_mode=conv.padding_mode,
                ),
            )
            if self.norm:
                parts["bn"] = nn.BatchNorm2d(conv.in_channels)
                parts["act"] = nn.ReLU(inplace=True)
            parts["pw"] = _pointwise(
                self.block,
                conv.in_channels,
                conv.out_channels,
                groups=self.groups,
                overlap=self.overlap,
                bias=conv.bias is not None,
            )
            set_submodule(model, path, FactorizedConv(parts).to(conv.weight))
        return model
