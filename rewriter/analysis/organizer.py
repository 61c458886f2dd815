"""Paper 003's stage-level organizer: which units move between stages, or leave, by their IF gain.

Each iteration (paper 003, Figure 2): take the last unit (block, or conv in a plain net) of every stage and
pick the one with the smallest IF gain (the source); tentatively append a copy of each other stage's
repeating unit and pick the stage where it gains most (the target); then, with threshold theta,

1. move the source's last unit to the target if gain'_max > gain_min and gain'_max > theta,
2. remove it if gain'_max < theta and gain_min < theta,
3. stop otherwise (gain_min > gain'_max and gain_min > theta, and the ties the paper leaves open).

Choices the paper leaves open: ties between sources go to the later stage, ties between targets to the
earlier one; a stage's first unit (which changes the resolution or the width) is never removed; a moved
unit is a copy of the target stage's repeating unit (a stage with only a first unit gets a stride-1,
width-preserving copy of it). This module decides; ``reorganize-stages`` edits the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from .information_field import ALPHA, stage_field
from .stages import Stage, Unit


@dataclass(frozen=True)
class Iteration:
    """One step of the organizer: the source stage's last unit and its gain, the best target, the decision."""

    iteration: int
    source: int
    unit: str
    gain_min: float
    target: int | None
    gain_max: float
    decision: str  # move, remove or stop


@dataclass
class StageState:
    """A stage while the organizer works on it: its current units, what it lost and gained."""

    stage: Stage
    units: list[Unit]
    template: Unit | None  # the unit a copy appended to this stage would be
    adapted: bool = False  # the template is a stride-1, same-width copy of the stage's first unit
    removed: list[Unit] = field(default_factory=list)
    added: int = 0
    editable: bool = True  # its units live where blocks can be removed and appended

    def last_gain(self, alpha: float) -> float:
        return stage_field(self.stage, self.units, alpha=alpha).units[-1].gain

    def append_gain(self, alpha: float) -> float:
        assert self.template is not None
        return stage_field(self.stage, [*self.units, self.template], alpha=alpha).units[-1].gain

    @property
    def removable(self) -> bool:
        return self.editable and len(self.units) > 1 and self.units[-1].repeatable


def unit_count(units: Sequence[Unit]) -> int:
    """Blocks in a stage, or convs where the stage has no blocks (pools and stems do not count)."""
    blocks = sum(u.kind == "block" for u in units)
    return blocks or sum(u.kind == "conv" for u in units)


def stage_template(stage: Stage) -> tuple[Unit | None, bool]:
    """The unit a stage repeats (its last repeatable one), else a stride-1, same-width copy of its last block
    or conv (then ``True``), else None."""
    for unit in reversed(stage.units):
        if unit.repeatable:
            return unit, False
    for unit in reversed(stage.units):
        if unit.kind in ("block", "conv") and unit.out_channels:
            copy = dataclasses.replace(
                unit, in_channels=unit.out_channels, downsamples=False, growth=unit.full_growth
            )
            return copy, True
    return None, False


def stage_states(stages: Sequence[Stage], editable: Sequence[bool]) -> list[StageState]:
    """The organizer's starting state: every stage with its units and its template (none if not editable)."""
    states = []
    for stage, can_edit in zip(stages, editable, strict=True):
        template, adapted = stage_template(stage) if can_edit else (None, False)
        states.append(StageState(stage, list(stage.units), template, adapted, editable=can_edit))
    return states


def organize(
    states: list[StageState], *, alpha: float = ALPHA, theta: float = 0.0, max_iterations: int = 64
) -> list[Iteration]:
    """Run the organizer on ``states`` (changed in place: units moved, removed, counted) and return its record."""
    history = []
    for iteration in range(1, max_iterations + 1):
        sources = [(state.last_gain(alpha), i) for i, state in enumerate(states) if state.removable]
        if not sources:
            break
        gain_min, src = min(sources, key=lambda item: (item[0], -item[1]))
        targets = [
            (states[i].append_gain(alpha), i) for i in range(len(states)) if i != src and states[i].template
        ]
        gain_max, tgt = (
            max(targets, key=lambda item: (item[0], -item[1])) if targets else (float("-inf"), None)
        )
        decision = _decide(gain_min, gain_max, tgt is not None, theta)
        source = states[src]
        target = states[tgt].stage.index if tgt is not None else None
        history.append(
            Iteration(iteration, source.stage.index, source.units[-1].name, round(gain_min, 4), target,
                      round(gain_max, 4), decision)
        )  # fmt: skip
        if decision == "stop":
            break
        unit = source.units.pop()
        if unit in source.stage.units:
            source.removed.append(unit)
        else:
            source.added -= 1  # a copy appended earlier leaves again
        if decision == "move":
            states[tgt].units.append(states[tgt].template)
            states[tgt].added += 1
    return history


def _decide(gain_min: float, gain_max: float, has_target: bool, theta: float) -> str:
    if has_target and gain_max > gain_min and gain_max > theta:
        return "move"
    if gain_max < theta and gain_min < theta:
        return "remove"
    return "stop"
