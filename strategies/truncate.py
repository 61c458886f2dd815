"""``truncate``: remove the border layer and everything after it, and put a GAP + Linear head on the cut.

Paper 000 section V, Fig. 11: "All layers with r_{l-1,min} > i are replaced by a simple output-head,
effectively removing the border layer and every layer after it." In a multi-path network the cut must be
a point every path to the output passes through (a dominator of the output), so residual blocks are kept
or removed whole.

The cut reaches a fixed point: the truncated model has no unproductive layer at the target size, so
truncating it again changes nothing. Cutting the tail can expose a new one: with skip connections r_min
zig-zags (paper 000 IV-C), and a layer that exceeds the input before b_min is productive only because
later layers still integrate through the skip path; once those are cut it ends the model and is the new
tail. The kept part's receptive fields are the original's (nothing after a node changes its field), so the
truncated model's tail is the final run of exceeding layers among the kept ones. The cut therefore goes
to the last point at or before b_min's block after which the last kept conv/pool layer is within the
input: the same cut that repeating the one-block cut until nothing changes reaches (tests/strategies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import nn

from rewriter.analysis import Analysis, analyze, axes_text, block_name, cut_points
from rewriter.engine import Context, Cut, Edit, Moved, Plan, Strategy, TailCut, extract_prefix, param
from rewriter.models import GapLinearHead, Truncated


def _fixed_point(analysis: Analysis, points: list[tuple[str | None, list[str]]], last: int) -> int | None:
    """The latest of ``points[: last + 1]`` whose kept part (everything before its block) does not end
    with a conv/pool layer that exceeds the input: cut there, the model's own tail is empty."""
    graph = analysis.graph
    tested = [
        (graph[layer.name].index, layer.exceeds) for layer in analysis.layers if layer.exceeds is not None
    ]
    for i in range(last, -1, -1):
        start = graph[points[i][1][0]].index
        kept = [exceeds for index, exceeds in tested if index < start]
        if not kept or not kept[-1]:
            return i
    return None


@dataclass(frozen=True)
class NewHead:
    """What ``apply`` attaches at the cut: a head over ``channels`` feature maps."""

    channels: int


@dataclass(frozen=True)
class Truncate(Strategy):
    """Cut the border layer and every layer after it, then attach GAP + Linear (paper 000 V, Fig. 11)."""

    name: ClassVar[str] = "truncate"
    payload_type: ClassVar[type] = NewHead
    search_order: ClassVar[int] = 50
    tail_cut: ClassVar[TailCut] = TailCut(rule_param="rule")

    rule: Literal["input", "output"] = param(
        "input", help="border rule: the layer's input field (papers) or output"
    )
    feature_size: int | None = param(
        None, help="test against this size instead of the input (small objects)", low=1, high=4096
    )
    keep_blocks: int = param(
        0,
        help="keep this many more blocks after the cut (a softer trim; they may hold unproductive layers)",
        low=0,
        high=1000,
        search=(0, 1),
    )
    head: Literal["gap-linear"] = param("gap-linear", help="the new head: global average pooling + Linear")

    def _analysis(self, model: nn.Module, context: Context) -> Analysis:
        current = context.analysis
        if current.border_rule == self.rule and current.feature_size == self._feature_size:
            return current
        return analyze(
            model,
            context.input_size,
            border_rule=self.rule,
            feature_size=self._feature_size,
            in_channels=context.in_channels,
            leaf_modules=context.leaf_classes,
            flops=False,
        )

    @property
    def _feature_size(self) -> tuple[int, int] | None:
        return (self.feature_size, self.feature_size) if self.feature_size is not None else None

    def plan(self, model: nn.Module, context: Context) -> Plan:
        analysis = self._analysis(model, context)
        border = analysis.border_layer_min
        limit = "x".join(map(str, analysis.limit))
        if border is None:
            nothing = f"no unproductive layer at {limit} under the '{self.rule}' rule: nothing to cut"
            return Plan(self.name, self.params(), notes=(nothing,))
        graph = analysis.graph
        points = cut_points(graph)
        border_index = graph[border].index
        before = [i for i, (_, block) in enumerate(points) if graph[block[0]].index <= border_index]
        fixed = _fixed_point(analysis, points, before[-1]) if before else None
        if fixed is None:
            raise self.refuse(f"the border layer '{border}' is in the first block: a cut would keep no layer")
        chosen = fixed + self.keep_blocks
        if chosen >= len(points):
            raise self.refuse(
                f"keep_blocks={self.keep_blocks} goes past the last block ({len(points) - 1 - fixed} "
                "blocks follow the cut)"
            )
        cut, block = points[chosen]
        if cut is None and chosen == 0:
            raise self.refuse(f"the border layer '{border}' is in the first block: a cut would keep no layer")
        if cut is None:
            raise self.refuse(
                f"before block '{block_name(block)}' there is no point every path passes through that is one "
                "[N, C, H, W] feature map (channels-last maps, or none before it): a global-average-pooling head "
                "cannot be attached there"
            )
        channels = graph[cut].output_shape[1]
        held = points[before[-1]][1]
        return Plan(
            self.name,
            self.params(),
            edits=self._edits(analysis, cut, channels, context.num_classes),
            notes=self._notes(analysis, border, held, cut, context),
            payload=NewHead(channels),
            new_modules=("head",),
            moved=(Moved("features.", ""),),
            num_classes=context.num_classes,
            cut=Cut(cut, "features"),
        )

    def _edits(self, analysis: Analysis, cut: str, channels: int, num_classes: int) -> tuple[Edit, ...]:
        cut_index = analysis.graph[cut].index
        edits = [Edit("keep", "features", f"every layer up to and including '{cut}'", "")]
        for layer in analysis.layers:
            if analysis.graph[layer.name].index <= cut_index:
                continue
            tested = layer.r_in_min if self.rule == "input" else layer.r_out_min
            which = "r_in_min" if self.rule == "input" else "r_out_min"
            over = f"{which} {axes_text(tested)} > {axes_text(analysis.limit)}"
            if layer.in_tail:
                reason = f"unproductive: {over}"
            elif layer.exceeds:
                reason = f"exceeds the input ({over}): it would end the cut model's tail"
            else:
                reason = "after the cut"
            edits.append(Edit("remove", layer.name, layer.type, reason))
        edits.append(
            Edit(
                "attach",
                "head",
                f"AdaptiveAvgPool2d(1) + Flatten + Linear({channels}, {num_classes})",
                "the simple output head of paper 000 Fig. 11",
            )
        )
        return tuple(edits)

    def _notes(
        self, analysis: Analysis, border: str, held: list[str], cut: str, context: Context
    ) -> tuple[str, ...]:
        block = block_name([n for n in held if n in analysis.graph])
        notes = [
            f"b_min '{border}' lies in block '{block}'; the cut goes after '{cut}', the last point every path "
            "passes through at or before it after which the last kept conv/pool layer is within the input, so "
            "the truncated model has no unproductive layer"
            + (f"; then {self.keep_blocks} block(s) more are kept (keep_blocks)" if self.keep_blocks else "")
        ]
        if context.pretrained:
            notes.append(
                "the baseline is pretrained but the new head is not: fine-tune it on the kept features "
                "(a linear probe on the stump, dissertation 9.5.2) before using the model"
            )
        return tuple(notes)

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        features = extract_prefix(
            model,
            plan.cut.at,
            leaf_classes=context.leaf_classes,
            class_name=type(model).__name__ + "Features",
        )
        head = GapLinearHead(plan.payload.channels, plan.num_classes)
        reference = next(model.parameters(), None)
        return Truncated(features, head if reference is None else head.to(reference))
