"""Summaries of a study: per model x recipe, accuracy over seeds, costs, deltas to the model's baseline,
convergence marks, and the Pareto fronts (no other variant at least as accurate and cheaper)."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .record import CellRow, Extension

_COSTS = ("params", "flops", "latency_ms_b1", "latency_ms_b32")


@dataclass(frozen=True)
class Group:
    """One model x recipe over its seeds. ``marks`` counts the convergence marks of its finished cells
    (``None``: a cell recorded before marks existed); deltas are against the same model's baseline, over
    the seeds both finished."""

    model: str
    recipe: str
    source: str = ""
    n: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()
    accuracy: float | None = None
    accuracy_std: float | None = None
    by_seed: dict[int, float] = field(default_factory=dict)
    params: float | None = None
    flops: float | None = None
    latency_ms_b1: float | None = None
    latency_ms_b32: float | None = None
    latency_noisy: bool = False
    train_s: float | None = None
    border_layer_min: str | None = None
    is_baseline: bool = False
    same_as_baseline: bool = False
    marks: dict[str | None, int] = field(default_factory=dict)
    chance: float | None = None
    delta_accuracy: float | None = None
    delta_params_percent: float | None = None
    delta_flops_percent: float | None = None
    delta_latency_ms_b1_percent: float | None = None
    delta_latency_ms_b32_percent: float | None = None
    pareto: bool = False
    pareto_all: bool = False
    histories: tuple[str, ...] = ()  # how its cells were trained: "fresh", or "12>24" for extended ones
    extensions: tuple[Extension, ...] = ()  # the distinct extensions of its cells (``study --extend``)
    not_extended: tuple[int, ...] = ()  # the epochs its cells whose continuation failed were kept at

    @property
    def extended(self) -> bool:
        return any(h != "fresh" for h in self.histories)

    @property
    def converged(self) -> bool:
        """Every finished seed converged (and there is one)."""
        return self.n > 0 and self.marks.get("converged", 0) == self.n

    def to_json(self) -> dict[str, Any]:
        """A plain dict (what the Pareto plot and results readers take)."""
        data = dataclasses.asdict(self)
        data["errors"] = list(self.errors)
        data["marks"] = {str(k): v for k, v in self.marks.items()}
        data["converged"] = self.converged
        return data


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean(values: list[Any], *, median: bool = False) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return statistics.median(known) if median else statistics.fmean(known)


def _group(model: str, source: str, recipe: str, cells: list[CellRow]) -> Group:
    ok = [r for r in cells if r.ok and r.test_accuracy is not None]
    accuracy = [r.test_accuracy for r in ok]
    is_baseline = any(r.is_baseline for r in cells)
    return Group(
        model=model, recipe=recipe, source=source, n=len(ok), failed=len(cells) - len(ok),
        errors=tuple(sorted({r.error or "no test accuracy" for r in cells if r not in ok})),
        accuracy=statistics.fmean(accuracy) if accuracy else None,
        accuracy_std=_spread(accuracy) if accuracy else None,
        by_seed={r.seed: r.test_accuracy for r in ok},
        params=_mean([r.params for r in ok]), flops=_mean([r.flops for r in ok]),
        latency_ms_b1=_mean([r.latency_ms_b1 for r in ok], median=True),
        latency_ms_b32=_mean([r.latency_ms_b32 for r in ok], median=True),
        latency_noisy=any(r.latency_noisy for r in ok),
        train_s=_mean([r.train_s for r in ok]),
        border_layer_min=ok[0].border_layer_min if ok else None,
        is_baseline=is_baseline,
        # a recipe that changed nothing for this model: its cells are the baseline's
        same_as_baseline=bool(ok) and not is_baseline and all(r.same_as_baseline for r in ok),
        marks=dict(Counter(r.convergence for r in ok)),
        chance=_mean([r.chance for r in ok]),
        histories=tuple(sorted({Extension.history(r.extensions) for r in ok})),
        extensions=tuple(dict.fromkeys(e for r in ok for e in r.extensions)),
        not_extended=tuple(sorted({r.epochs or 0 for r in ok if r.not_extended is not None})),
    )  # fmt: skip


def _deltas(group: Group, base: Group | None) -> Group:
    paired = sorted(set(group.by_seed) & set(base.by_seed)) if base is not None else []
    if not paired:
        return group
    changes: dict[str, Any] = {
        "delta_accuracy": statistics.fmean(group.by_seed[s] - base.by_seed[s] for s in paired)
    }
    for key in _COSTS:
        if key.startswith("latency") and (group.latency_noisy or base.latency_noisy):
            continue  # a difference of noise is no result
        mine, theirs = getattr(group, key), getattr(base, key)
        if mine is not None and theirs:
            changes[f"delta_{key}_percent"] = 100 * (mine - theirs) / theirs
    return dataclasses.replace(group, **changes)


def summarize(rows: Sequence[CellRow]) -> list[Group]:
    """Per model x recipe: accuracy mean and standard deviation over seeds, cost (means over seeds: an
    input-adaptive model's FLOPs differ per seed), deltas to the model's baseline (accuracy over the seeds
    both finished), convergence marks, and whether the variant is on the Pareto front: ``pareto`` among the
    variants of the same model, ``pareto_all`` among all of the study."""
    keys = list(dict.fromkeys((r.model, r.source, r.recipe) for r in rows))
    groups = [
        _group(m, s, c, [r for r in rows if (r.model, r.source, r.recipe) == (m, s, c)]) for m, s, c in keys
    ]
    bases = {(g.model, g.source): g for g in groups if g.is_baseline}
    groups = [_deltas(g, bases.get((g.model, g.source))) for g in groups]
    measured = [g for g in groups if g.n and not g.same_as_baseline]
    fronted = []
    for g in groups:  # the front among the model's own variants, and among every variant of the study
        rivals = [o for o in measured if o is not g]
        own = [o for o in rivals if (o.model, o.source) == (g.model, g.source)]
        fronted.append(dataclasses.replace(
            g, pareto=g in measured and not any(_dominates(o, g) for o in own),
            pareto_all=g in measured and not any(_dominates(o, g) for o in rivals),
        ))  # fmt: skip
    return fronted


def _dominates(a: Group, b: Group, tol: float = 1e-9) -> bool:
    """``a`` costs no more and is no less accurate than ``b``, and is strictly better in one of them;
    accuracies are means of float fractions, so equality is up to ``tol``."""
    cheaper, costs_no_more = a.flops < b.flops, a.flops <= b.flops
    more_accurate, as_accurate = a.accuracy > b.accuracy + tol, a.accuracy >= b.accuracy - tol
    return costs_no_more and as_accurate and (cheaper or more_accurate)


def display_names(groups: Sequence[Group]) -> dict[tuple[str, str], str]:
    """(model, source) -> the name to show: the model, with its source hash where two sources share it."""
    sources: dict[str, set[str]] = {}
    for g in groups:
        sources.setdefault(g.model, set()).add(g.source)
    return {(g.model, g.source): g.model if len(sources[g.model]) == 1 else f"{g.model} [{g.source}]"
            for g in groups}  # fmt: skip
