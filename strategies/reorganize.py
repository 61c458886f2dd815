"""``reorganize-stages``: paper 003's stage-level organizer, driven by the Information Field gain.

The organizer (``rewriter.analysis.organize``, paper 003 Figure 2) decides which stage's last unit moves to
the stage where an extra unit adds the most IF, or leaves, until no rule applies; this strategy edits the
model accordingly. Untouched units keep their weights; the units are edited in the ``nn.Sequential`` that
holds them; a moved unit is a fresh copy of the target stage's repeating unit (a stride-1, width-preserving
copy of its first unit where the stage has no other).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from rewriter.analysis import (
    ALPHA,
    Iteration,
    StageState,
    find_stages,
    organize,
    stage_states,
    unit_count,
)
from rewriter.engine import (
    Context,
    Edit,
    Plan,
    Strategy,
    adapt_input_width,
    fresh_copy,
    param,
    resequence,
    sequence_changes,
)


def _in_sequential(model: nn.Module, path: str) -> bool:
    """Whether the module at ``path`` sits in an nn.Sequential (a ResNet's stem sits in the model itself)."""
    parent = path.rpartition(".")[0]
    return isinstance(model.get_submodule(parent) if parent else model, nn.Sequential)


def _append_edit(state: StageState) -> tuple[Edit, Append]:
    template = state.template
    kept = [u for u in state.stage.units if u not in state.removed]
    how = "a stride-1, same-width copy of" if state.adapted else "copies of"
    detail = f"{state.added} fresh {how} '{template.name}' after '{kept[-1].name}'"
    edit = Edit(
        "append", f"stage {state.stage.index}", detail, "the stage where an extra unit adds the most IF"
    )
    return edit, Append(
        kept[-1].modules[-1], tuple(template.modules), state.added, state.adapted, template.out_channels
    )


@dataclass(frozen=True)
class Append:
    """Fresh copies of the unit made of the ``template`` modules, inserted after module ``after``."""

    after: str
    template: tuple[str, ...]
    count: int
    adapt: bool  # a stride-1, width-preserving copy of a stage's first unit
    width: int | None


@dataclass(frozen=True)
class Reorganization:
    """What ``apply`` changes: modules removed, units appended, and the organizer's record."""

    remove: tuple[str, ...]
    append: tuple[Append, ...]
    iterations: tuple[Iteration, ...]
    blocks_per_stage: dict[int, int]


@dataclass(frozen=True)
class ReorganizeStages(Strategy):
    """Move blocks to the stages where they add the most Information Field (paper 003, stage-level organizer)."""

    name: ClassVar[str] = "reorganize-stages"
    payload_type: ClassVar[type] = Reorganization
    search_order: ClassVar[int] = 30

    theta: float = param(
        0.0, help="IF gain that separates underfitting from overfitting (paper: 0 for VGG)", low=-10, high=10
    )
    alpha: float = param(
        ALPHA, help="decay of the IF gain with the field already covered (paper: 3)", low=0, high=100
    )
    max_iterations: int = param(64, help="stop after this many moves or removals", low=1, high=10_000)

    def plan(self, model: nn.Module, context: Context) -> Plan:
        stages = [
            s for s in find_stages(model, context.analysis.graph) if any(u.kind != "pool" for u in s.units)
        ]
        states = stage_states(stages, [_in_sequential(model, s.units[-1].modules[-1]) for s in stages])
        if not any(state.removable for state in states) or not any(state.template for state in states):
            raise self.refuse(
                "no stage has a repeatable block (same width in and out, no downsampling) to move"
            )
        history = organize(states, alpha=self.alpha, theta=self.theta, max_iterations=self.max_iterations)
        return self._to_plan(model, states, history)

    def _to_plan(self, model: nn.Module, states: list[StageState], history: list[Iteration]) -> Plan:
        edits, removals, appends = [], [], []
        for state in states:
            index = state.stage.index
            for unit in state.removed:
                edits.append(
                    Edit("remove", unit.name, f"{unit.kind} of stage {index}", "low IF gain at the stage end")
                )
                removals.extend(unit.modules)
            if state.added > 0:
                edit, append = _append_edit(state)
                edits.append(edit)
                appends.append(append)
        try:
            renamed, fresh = sequence_changes(
                model, set(removals), {a.after: a.count * len(a.template) for a in appends}
            )
        except ValueError as err:
            raise self.refuse(str(err)) from err
        per_stage = {s.stage.index: unit_count(s.units) for s in states}
        notes = [
            f"stage {h.source}'s last unit '{h.unit}' has IF gain {h.gain_min}; the best target is stage "
            f"{h.target} with {h.gain_max}: {h.decision}"
            for h in history
        ]
        notes.append(
            "blocks per stage (convs in a plain net): " + ", ".join(f"{i}: {n}" for i, n in per_stage.items())
        )
        payload = Reorganization(tuple(removals), tuple(appends), tuple(history), per_stage)
        return Plan(self.name, self.params(), tuple(edits), tuple(notes), payload, new_modules=tuple(fresh),
                    moved=tuple(renamed))  # fmt: skip

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        insertions: dict[str, list[nn.Module]] = {}
        for append in plan.payload.append:
            group = []
            for _ in range(append.count):
                modules = [fresh_copy(model.get_submodule(path)) for path in append.template]
                if append.adapt:
                    modules = [
                        adapt_input_width(m, append.width) if i == 0 else m for i, m in enumerate(modules)
                    ]
                group.extend(modules)
            insertions[append.after] = group
        resequence(model, set(plan.payload.remove), insertions)
        return model
