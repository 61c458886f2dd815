"""The search: every composition of the search space, evaluated one at a time, depth first.

A composition applies strategies in their search order, each at most once, each in one of its
configurations. Compositions share their prefixes: the model after ``stem + reposition`` is built once and
every longer composition starting with it is built from it, so each candidate costs one plan, one apply on
a meta-device copy and one analysis. Only the chain of models on the current path is kept (as meta
tensors), never all candidates. A step that is refused drops its composition and every longer one that
starts with it; a step that changes nothing, or yields a model already seen (same structure, same kept
tensors, same figures), is recorded as a duplicate and not expanded twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from .._errors import RecipeError, RewriteError, RewriterError
from .._text import one_line
from ..analysis.analyzer import Analysis
from ..analysis.fx_tracer import traced_code
from ..engine.recipe import Step
from ..engine.registry import get_strategy
from ..engine.strategy import Context, apply_plan, build_strategy
from .copies import TensorInfo, check_structure, clone_structure, meta_copy, tensor_infos, zeros_copy
from .figures import Figures, measure_candidate, output_classes
from .space import StrategyChoices

Status = Literal["ok", "dropped", "duplicate"]


def step_text(step: Step) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.params.items())
    return f"{step.strategy}({params})" if params else step.strategy


@dataclass(frozen=True)
class Candidate:
    """One composition: its steps (as a recipe records them), what became of it, and its figures."""

    index: int
    steps: tuple[Step, ...]
    status: Status
    figures: Figures | None = None
    reason: str = ""  # why it was dropped, or what it duplicates
    duplicate_of: int | None = None
    verified: bool = False  # rewritten for real, every invariant of ``rewriter.rewrite`` checked

    @property
    def label(self) -> str:
        return " + ".join(step_text(s) for s in self.steps) or "baseline"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "steps": [{s.strategy: dict(s.params)} for s in self.steps],
            "status": self.status,
            "reason": self.reason or None,
            "duplicate_of": self.duplicate_of,
            "verified": self.verified,
            **(self.figures.to_json() if self.figures else {}),
        }


@dataclass
class _Node:
    """A model on the current path of the search (meta tensors), with what its children need."""

    index: int
    steps: tuple[Step, ...]
    level: int  # the position in the space of its last step (children use later strategies only)
    model: nn.Module
    analysis: Analysis
    tensors: dict[str, TensorInfo]
    classes: int


@dataclass
class SearchSettings:
    """What every candidate shares."""

    input_size: tuple[int, int]
    in_channels: int = 3
    leaf_classes: tuple[type, ...] = ()
    pretrained: bool = False
    latency: bool = False
    max_steps: int | None = None
    progress: Callable[[Candidate], None] | None = None


@dataclass
class _Search:
    space: Sequence[StrategyChoices]
    settings: SearchSettings
    candidates: list[Candidate] = field(default_factory=list)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # fingerprint -> (candidate, level)

    def record(self, steps: tuple[Step, ...], status: Status, **fields: Any) -> Candidate:
        candidate = Candidate(len(self.candidates), steps, status, **fields)
        self.candidates.append(candidate)
        if self.settings.progress is not None:
            self.settings.progress(candidate)
        return candidate

    def expand(self, node: _Node) -> None:
        limit = self.settings.max_steps
        if limit is not None and len(node.steps) >= limit:
            return
        # later strategies first: a composition then comes after every composition of a subset of its
        # steps, so the first candidate found for a model is the one with the fewest steps
        for level in reversed(range(node.level + 1, len(self.space))):
            choices = self.space[level]
            for config in choices.configs:
                child = self.child(node, level, choices.name, config)
                if child is not None:
                    self.expand(child)

    def child(self, node: _Node, level: int, name: str, config: dict[str, Any]) -> _Node | None:
        asked = (*node.steps, Step(name, dict(config)))
        strategy = build_strategy(name, config, where=f"the search of {name}")
        settings = self.settings
        context = Context.of(
            node.analysis, num_classes=node.classes, in_channels=settings.in_channels,
            leaf_classes=settings.leaf_classes, pretrained=settings.pretrained,
        )  # fmt: skip
        try:
            plan = strategy.plan(node.model, context)
            steps = (*node.steps, _resolved(strategy, config, plan))
            if plan.is_noop:
                self.record(
                    asked, "duplicate", reason=f"{name} changes nothing here", duplicate_of=node.index
                )
                return None
            new = _applied(strategy, node.model, plan, context)
            tensors = check_structure(node.tensors, new, plan)
            key = _fingerprint(new, tensors)
            if key in self.seen and not self.worth_expanding(key, steps, level):
                return None
            analysis, figures = measure_candidate(
                new, settings.input_size, in_channels=settings.in_channels,
                leaf_classes=settings.leaf_classes, latency=settings.latency,
            )  # fmt: skip
            classes = plan.num_classes or node.classes
            if output_classes(analysis) != classes:
                raise RewriteError(f"invariant 1 broken: the new model does not return [batch, {classes}]")
        except RecipeError:
            raise
        except Exception as err:  # a refusal, or a failure of the strategy on this model: the reason is kept
            reason = one_line(err, where=not isinstance(err, RewriterError))
            self.record(asked, "dropped", reason=f"{name}: {reason}")
            return None
        if key in self.seen:  # seen, but reached here from an earlier strategy: its children are new
            index = self.seen[key][0]
            self.seen[key] = (index, level)
            return _Node(index, steps, level, new, analysis, tensors, classes)
        candidate = self.record(steps, "ok", figures=figures)
        self.seen[key] = (candidate.index, level)
        return _Node(candidate.index, steps, level, new, analysis, tensors, classes)

    def worth_expanding(self, key: str, steps: tuple[Step, ...], level: int) -> bool:
        """Record a model seen before as a duplicate, represented by the composition with the fewest steps;
        whether it must be expanded again (it was reached before only from a later strategy)."""
        first_index, first_level = self.seen[key]
        first = self.candidates[first_index]
        if len(steps) < len(first.steps):
            candidate = self.record(steps, "ok", figures=first.figures)
            reason = f"the same model as {candidate.label}"
            self.candidates[first_index] = dataclasses.replace(
                first, status="duplicate", reason=reason, duplicate_of=candidate.index
            )
            self.seen[key] = (candidate.index, first_level)
        else:
            reason = f"the same model as {first.label}"
            self.record(steps, "duplicate", figures=first.figures, reason=reason, duplicate_of=first_index)
        return level < first_level


def _resolved(strategy, config: dict[str, Any], plan) -> Step:
    """The step as the recipe records it: the searched parameters, and any the plan resolved (a measured
    width factor); parameters left at their defaults are left out."""
    defaults = strategy.params()
    params = {k: v for k, v in plan.params.items() if k in config or defaults.get(k) != v}
    return Step(plan.strategy, params)


def _applied(strategy, parent: nn.Module, plan, context: Context) -> nn.Module:
    """``strategy.apply`` on a meta copy of ``parent``; a strategy that must read tensor values (one that
    ranks channels by their weights) gets a zero-filled CPU copy instead, whose result is moved to meta. Its
    notes are dropped: a candidate is built, never trained, and has no report."""
    work = clone_structure(parent)
    try:
        new = apply_plan(strategy, work, plan, context).model
    except (NotImplementedError, RuntimeError) as err:
        if isinstance(err, RewriterError):
            raise
        new = meta_copy(apply_plan(strategy, zeros_copy(parent), plan, context).model)
    new.train(parent.training)
    return new


def _fingerprint(model: nn.Module, tensors: dict[str, TensorInfo]) -> str:
    """The identity of a candidate model: its structure (the code of traced parts included) and where each
    of its tensors comes from in the baseline."""
    text = repr(model) + repr(traced_code(model)) + repr(sorted((k, v[0], v[2]) for k, v in tensors.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def run_search(
    model: nn.Module,
    baseline: tuple[Analysis, Figures],
    space: Sequence[StrategyChoices],
    settings: SearchSettings,
    classes: int,
) -> list[Candidate]:
    """Evaluate the baseline and every composition of ``space``; return all candidates in search order.

    ``model`` is the caller's baseline; it is copied to the meta device and never changed.
    """
    for choices in space:
        get_strategy(choices.name)
    search = _Search(space, settings)
    meta = meta_copy(model)
    analysis, figures = baseline
    root = search.record((), "ok", figures=figures)
    tensors = tensor_infos(meta)
    search.seen[_fingerprint(meta, tensors)] = (root.index, -1)
    search.expand(_Node(root.index, (), -1, meta, analysis, tensors, classes))
    return search.candidates
