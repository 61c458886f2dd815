"""``reorganize-stages``: paper 003's stage-level organizer, driven by the Information Field gain.

Each iteration (paper 003, Figure 2): take the last unit (block, or conv in a plain net) of every stage and
pick the one with the smallest IF gain (the source); tentatively append a copy of each other stage's
repeating unit and pick the stage where it gains most (the target); then, with threshold theta,

1. move the source's last unit to the target if gain'_max > gain_min and gain'_max > theta,
2. remove it if gain'_max < theta and gain_min < theta,
3. stop otherwise (gain_min > gain'_max and gain_min > theta, and the ties the paper leaves open).

Choices the paper leaves open: ties between sources go to the later stage, ties between targets to the
earlier one; a stage's first unit (which changes the resolution or the width) is never removed; a moved
unit is a fresh copy of the target stage's repeating unit (a stage with only a first unit gets a stride-1,
width-preserving copy of it); IF details are in ``rewriter.analysis.information_field``. Untouched units keep their
weights; the units are edited in the ``nn.Sequential`` that holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch.fx as fx
from torch import nn

from rewriter.analysis import ALPHA, Stage, Unit, find_stages, stage_field, trace
from rewriter.engine import Context, Edit, Moved, Plan, Strategy, fresh_copy, param, set_submodule


@dataclass
class _StageState:
    stage: Stage
    units: list[Unit]
    template: Unit | None
    removed: list[Unit] = field(default_factory=list)
    added: int = 0
    editable: bool = True  # its units live in an nn.Sequential, where blocks can be removed and appended

    def last_gain(self, alpha: float) -> float:
        return stage_field(self.stage, self.units, alpha=alpha).units[-1].gain

    def append_gain(self, alpha: float) -> float:
        assert self.template is not None
        return stage_field(self.stage, [*self.units, self.template], alpha=alpha).units[-1].gain

    @property
    def removable(self) -> bool:
        return self.editable and len(self.units) > 1 and self.units[-1].repeatable


def _count(units: list[Unit]) -> int:
    """Blocks in a stage, or convs where the stage has no blocks (pools and stems do not count)."""
    blocks = sum(u.kind == "block" for u in units)
    return blocks or sum(u.kind == "conv" for u in units)


def _template(stage: Stage) -> tuple[Unit | None, bool]:
    """The unit a stage repeats (its last repeatable one), else a stride-1 copy of its last block or conv."""
    for unit in reversed(stage.units):
        if unit.repeatable:
            return unit, False
    for unit in reversed(stage.units):
        if unit.kind in ("block", "conv") and unit.out_channels:
            return Unit(
                unit.name,
                unit.kind,
                unit.modules,
                unit.nodes,
                unit.first,
                unit.last,
                unit.out_channels,
                unit.out_channels,
                unit.size,
                False,
                unit.full_growth,
                unit.full_growth,
                unit.channel_ops,
            ), True
    return None, False


def _stride_one(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            m.stride = (1,) * len(m.stride)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            m.stride = 1


def _retarget_conv(conv: nn.Conv2d, width: int, *, depthwise: bool) -> nn.Conv2d:
    out_channels = width if depthwise else conv.out_channels
    return nn.Conv2d(
        width,
        out_channels,
        conv.kernel_size,
        1,
        conv.padding,
        conv.dilation,
        groups=width if depthwise else conv.groups,
        bias=conv.bias is not None,
    ).to(conv.weight)


def _adapt_width(unit: nn.Module, width: int) -> nn.Module:
    """Make a unit read ``width`` channels: every conv and norm the unit's input reaches before a channel-mixing
    conv is rebuilt for the new width (depthwise convs pass it on), and its strides become 1."""
    _stride_one(unit)
    if isinstance(unit, nn.Conv2d):  # a plain net's unit: the conv itself
        return _retarget_conv(unit, width, depthwise=unit.groups == unit.in_channels == unit.out_channels)
    gm, _ = trace(unit)
    reached: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            reached.add(node)
            continue
        if not any(a in reached for a in node.all_input_nodes):
            continue
        if node.op != "call_module":
            reached.add(node)
            continue
        module = unit.get_submodule(node.target)
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups == module.in_channels == module.out_channels
            set_submodule(unit, node.target, _retarget_conv(module, width, depthwise=depthwise))
            if depthwise:
                reached.add(node)
        elif isinstance(module, nn.BatchNorm2d):
            set_submodule(unit, node.target, nn.BatchNorm2d(width).to(module.weight))
            reached.add(node)
        else:
            reached.add(node)
    if getattr(unit, "downsample", None) is not None:  # torchvision/timm residual blocks: identity shortcut
        unit.downsample = None
    if hasattr(
        unit, "use_res_connect"
    ):  # torchvision MobileNetV2: a stride-1 same-width block adds its input
        unit.use_res_connect = True
    return unit


def _in_sequential(model: nn.Module, path: str) -> bool:
    """Whether the module at ``path`` sits in an nn.Sequential (a ResNet's stem sits in the model itself)."""
    parent = path.rpartition(".")[0]
    return isinstance(model.get_submodule(parent) if parent else model, nn.Sequential)


def _new_order(model: nn.Module, removals: set[str], counts: dict[str, int]) -> dict[str, list[str | None]]:
    """Per edited container: the module paths it will hold, in order (None for a fresh copy)."""
    orders = {}
    for path in sorted({p.rpartition(".")[0] for p in removals | set(counts)}):
        container = model.get_submodule(path) if path else model
        order: list[str | None] = []
        for name in container._modules:
            full = f"{path}.{name}" if path else name
            if full not in removals:
                order.append(full)
            order.extend([None] * counts.get(full, 0))
        orders[path] = order
    return orders


def _names(container: nn.Module, path: str, order: list[str | None]) -> list[tuple[str, str | None]]:
    """(new name, old path) for each entry of a rebuilt container; integer names are renumbered."""
    numbered = all(name.isdigit() for name in container._modules)
    return [
        (str(i) if numbered else (old.rpartition(".")[2] if old else f"added{i}"), old)
        for i, old in enumerate(order)
    ]


def _append_edit(state: _StageState, adapt: bool) -> tuple[Edit, Append]:
    template = state.template
    kept = [u for u in state.stage.units if u not in state.removed]
    how = "a stride-1, same-width copy of" if adapt else "copies of"
    detail = f"{state.added} fresh {how} '{template.name}' after '{kept[-1].name}'"
    edit = Edit(
        "append", f"stage {state.stage.index}", detail, "the stage where an extra unit adds the most IF"
    )
    return edit, Append(
        kept[-1].modules[-1], tuple(template.modules), state.added, adapt, template.out_channels
    )


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
        states = []
        for stage in stages:
            editable = _in_sequential(model, stage.units[-1].modules[-1])
            template, adapted = _template(stage) if editable else (None, False)
            states.append((_StageState(stage, list(stage.units), template, editable=editable), adapted))
        if not any(state.removable for state, _ in states) or not any(state.template for state, _ in states):
            raise self.refuse(
                "no stage has a repeatable block (same width in and out, no downsampling) to move"
            )
        history = self._iterate([s for s, _ in states])
        return self._to_plan(model, [s for s, _ in states], [a for _, a in states], history)

    def _iterate(self, states: list[_StageState]) -> list[Iteration]:
        history = []
        for iteration in range(1, self.max_iterations + 1):
            sources = [(state.last_gain(self.alpha), i) for i, state in enumerate(states) if state.removable]
            if not sources:
                break
            gain_min, src = min(sources, key=lambda item: (item[0], -item[1]))
            targets = [
                (states[i].append_gain(self.alpha), i)
                for i in range(len(states))
                if i != src and states[i].template is not None
            ]
            gain_max, tgt = (
                max(targets, key=lambda item: (item[0], -item[1])) if targets else (float("-inf"), None)
            )
            if tgt is not None and gain_max > gain_min and gain_max > self.theta:
                decision = "move"
            elif gain_max < self.theta and gain_min < self.theta:
                decision = "remove"
            else:
                decision = "stop"
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
                source.added -= 1  # a copy this plan appended earlier leaves again
            if decision == "move":
                target = states[tgt]
                target.units.append(target.template)
                target.added += 1
        return history

    def _to_plan(
        self, model: nn.Module, states: list[_StageState], adapted: list[bool], history: list[Iteration]
    ) -> Plan:
        edits, removals, appends = [], [], []
        for state, adapt in zip(states, adapted, strict=True):
            index = state.stage.index
            for unit in state.removed:
                edits.append(
                    Edit("remove", unit.name, f"{unit.kind} of stage {index}", "low IF gain at the stage end")
                )
                removals.extend(unit.modules)
            if state.added > 0:
                edit, append = _append_edit(state, adapt)
                edits.append(edit)
                appends.append(append)
        renamed, fresh = self._renames(
            model, set(removals), {a.after: a.count * len(a.template) for a in appends}
        )
        per_stage = {s.stage.index: _count(s.units) for s in states}
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

    def _renames(
        self, model: nn.Module, removals: set[str], counts: dict[str, int]
    ) -> tuple[list[Moved], list[str]]:
        """Kept modules that a renumbered container moves, and the paths of the fresh ones."""
        renamed, fresh = [], []
        for path, order in _new_order(model, removals, counts).items():
            container = model.get_submodule(path) if path else model
            if not isinstance(container, nn.Sequential):
                raise self.refuse(
                    f"the units of '{path or type(model).__name__}' are not held in an nn.Sequential"
                )
            for name, old in _names(container, path, order):
                new = f"{path}.{name}" if path else name
                if old is None:
                    fresh.append(new)
                elif old != new:
                    renamed.append(Moved(new + ".", old + "."))
        return renamed, fresh

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        insertions: dict[str, list[nn.Module]] = {}
        for append in plan.payload.append:
            group = []
            for _ in range(append.count):
                modules = [fresh_copy(model.get_submodule(path)) for path in append.template]
                if append.adapt:
                    modules = [_adapt_width(m, append.width) if i == 0 else m for i, m in enumerate(modules)]
                group.extend(modules)
            insertions[append.after] = group
        counts = {after: len(group) for after, group in insertions.items()}
        for path, order in _new_order(model, set(plan.payload.remove), counts).items():
            container = model.get_submodule(path) if path else model
            pending = {after: iter(group) for after, group in insertions.items()}
            modules, last = [], None
            for old in order:
                if old is not None:
                    last = old
                modules.append(model.get_submodule(old) if old is not None else next(pending[last]))
            names = _names(container, path, order)
            container._modules.clear()
            for (name, _), module in zip(names, modules, strict=True):
                container._modules[name] = module
        return model
