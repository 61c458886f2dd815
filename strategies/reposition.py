"""``reposition-downsampling``: move one downsampling to a later stage boundary, or drop it.

Dissertation 11.4 (strategy D2, digest 6.3): the growth rate of the receptive field is changed "most
effectively by adding, removing, or re-positioning pooling layers". A *downsampling site*
(``rewriter.analysis.downsampling_sites``) is a stretch every path passes through that holds strided conv
or pooling layers: the stem's conv, its max-pool, a ResNet block's strided conv together with its strided
1x1 shortcut. Dropping a site sets its convs to stride 1 (weights kept) and replaces its pools by Identity;
moving it N boundaries later does the same and puts the downsampling back just before the N-th later site
(the pool itself, or for strided convs a parameter-free max-pool with their stride). The layers in between
work at the finer resolution and their receptive fields grow slower, without the cost of running the whole
network at the stem's resolution (``remove-stem-downsampling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from rewriter import RewriteError
from rewriter.analysis import Analysis, LayerNode, Site, downsampling_sites, module_ending_at
from rewriter.engine import (
    Context,
    DownsamplingEdits,
    Edit,
    Insertion,
    Moved,
    Plan,
    PoolSpec,
    Strategy,
    StrideChange,
    apply_downsampling_edits,
    check_replaceable,
    head_pooling,
    param,
    stride_text,
)


@dataclass(frozen=True)
class RepositionDownsampling(Strategy):
    """Move one downsampling to a later stage boundary, or drop it: fields grow slower up to there (D2)."""

    name: ClassVar[str] = "reposition-downsampling"
    payload_type: ClassVar[type] = DownsamplingEdits
    search_order: ClassVar[int] = 20

    site: int = param(
        0, help="which downsampling site, counted from the input (0 is the first)", low=0, high=63,
        search=(0, 1, 2, 3, 4),
    )  # fmt: skip
    move: int = param(
        0, help="0 drops it; N puts it back just before the N-th later site", low=0, high=63, search=(0, 1)
    )

    def plan(self, model: nn.Module, context: Context) -> Plan:
        analysis = context.analysis
        sites = downsampling_sites(analysis.graph)
        listing = "; ".join(f"{i}: {', '.join(s.layers)}" for i, s in enumerate(sites)) or "none"
        if self.site >= len(sites):
            raise self.refuse(f"site {self.site} does not exist: the model has {len(sites)} ({listing})")
        if self.move and self.site + self.move >= len(sites):
            later = len(sites) - 1 - self.site
            raise self.refuse(f"site {self.site} has {later} later site(s) to move to, not {self.move}")
        nodes = [analysis.graph[n] for n in sites[self.site].layers]
        stride = self._common_stride(nodes)
        why = self._reason(sites, stride)
        edits, strided, identity = [], [], []
        for node in nodes:
            self._guarded(check_replaceable, node, analysis)
            if node.effect.category == "conv":
                strided.append(StrideChange(node.target, (1,) * len(stride)))
                edits.append(Edit("set", node.name, f"stride {stride_text(node)} -> 1 (weights kept)", why))
            elif node.effect.category == "pool":
                identity.append(node.target)
                detail = f"{node.type} (stride {stride_text(node)}) -> Identity"
                edits.append(Edit("replace", node.name, detail, why))
            else:
                raise self.refuse(f"'{node.name}' ({node.type}) downsamples but is neither a conv nor a pool")
        payload = DownsamplingEdits(tuple(strided), tuple(identity))
        moved: tuple[Moved, ...] = ()
        if self.move:
            insertion = self._insertion(model, analysis, sites[self.site + self.move], nodes, stride)
            payload = DownsamplingEdits(payload.strides, payload.identity, insertions=(insertion,))
            detail = f"{insertion.pool.text()} after it"
            edits.append(
                Edit("insert", insertion.after, detail, f"the downsampling of site {self.site}, moved")
            )
            if any(True for _ in model.get_submodule(insertion.after).state_dict()):
                moved = (Moved(f"{insertion.after}.0.", f"{insertion.after}."),)
        else:
            head = self._guarded(
                head_pooling, model, analysis
            )  # the last map grows: keep a flat head working
            if head is not None:
                edits.append(head[0])
                payload = DownsamplingEdits(payload.strides, payload.identity, (head[1],))
        notes = (f"downsampling sites (from the input): {listing}",)
        return Plan(self.name, self.params(), tuple(edits), notes, payload, moved=moved)

    def _common_stride(self, nodes: list[LayerNode]) -> tuple[int, ...]:
        strides = {tuple(int(s) for s in n.effect.stride or ()) for n in nodes}
        if len(strides) != 1:
            raise self.refuse(
                f"site {self.site} downsamples with different strides ({', '.join(n.name for n in nodes)}); "
                "it cannot be moved or dropped as one"
            )
        return strides.pop()

    def _reason(self, sites: list[Site], stride: tuple[int, ...]) -> str:
        factor = max(stride)
        if not self.move:
            return f"downsampling dropped: every later receptive field grows {factor}x slower (D2)"
        target = sites[self.site + self.move].layers[0]
        return (
            f"downsampling moved to just before '{target}': the layers up to there grow {factor}x slower (D2)"
        )

    def _insertion(
        self,
        model: nn.Module,
        analysis: Analysis,
        target: Site,
        nodes: list[LayerNode],
        stride: tuple[int, ...],
    ) -> Insertion:
        after = module_ending_at(analysis.graph, target.start)
        if after is None:
            raise self.refuse(
                f"no module that runs once ends at '{target.start}' (before '{target.layers[0]}'): nowhere to "
                "put the downsampling back"
            )
        if len(nodes) == 1 and nodes[0].effect.category == "pool":
            spec = PoolSpec.of(model.get_submodule(nodes[0].target))
            if spec is None:
                raise self.refuse(
                    f"'{nodes[0].name}' is a {nodes[0].type}; only MaxPool2d and AvgPool2d move"
                )
        else:
            spec = PoolSpec("max", stride, stride)
        return Insertion(after, spec)

    def _guarded(self, check, *args):
        """Run a shared check; its refusal is this strategy's."""
        try:
            return check(*args)
        except RewriteError as err:
            raise self.refuse(str(err)) from err

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        apply_downsampling_edits(model, plan.payload)
        return model
