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
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

from rewriter.analysis import decomposed_channel_fields, find_stages, pointwise_reads
from rewriter.engine import Context, Edit, Plan, Strategy, param, set_submodule
from rewriter.models import factorized_conv

Block = Literal["dw-pw", "dw-gpw", "dw-rpw"]


@dataclass(frozen=True)
class Decomposition:
    """The conv modules ``apply`` replaces by a depthwise + pointwise pair."""

    layers: tuple[str, ...]


@dataclass(frozen=True)
class DecomposeKernels(Strategy):
    """Replace standard kxk convolutions by DW + PW/GPW/RPW blocks (paper 003, kernel-level decomposer)."""

    name: ClassVar[str] = "decompose-kernels"
    payload_type: ClassVar[type] = Decomposition
    search_order: ClassVar[int] = 40

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
                pointwise_reads(
                    self.block, conv.in_channels, conv.out_channels, groups=self.groups, overlap=self.overlap
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
            per_kernel = decomposed_channel_fields(
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
            fields = decomposed_channel_fields(
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
            block = factorized_conv(
                conv, self.block, groups=self.groups, overlap=self.overlap, norm=self.norm
            )
            set_submodule(model, path, block)
        return model
