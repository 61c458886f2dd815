"""The Pareto front and the choice against a brute-force enumeration: every composition of a small space
rewritten for real by ``rewriter.rewrite`` and measured on the rewritten module, the front found by
comparing every pair."""

from __future__ import annotations

import itertools

import pytest

import rewriter
from rewriter.optimize import Budget, choose, pareto_front

SITES = (0, 1, 2)
RULES = ("input", "output")
SEARCH = {
    "reposition-downsampling": {"site": list(SITES), "move": [0]},
    "truncate": {"rule": list(RULES), "keep_blocks": [0]},
}


def brute_force(model) -> dict[tuple, tuple]:
    """Every composition (each strategy absent or in one configuration, in the search order), rewritten and
    measured: recipe -> (FLOPs, unproductive layers, |1 - r_min / 32| of the last conv/pool layer)."""
    moves = [None, *({"reposition-downsampling": {"site": s, "move": 0}} for s in SITES)]
    cuts = [None, *({"truncate": {"rule": r, "keep_blocks": 0}} for r in RULES)]
    points = {}
    for steps in itertools.product(moves, cuts):
        recipe = [s for s in steps if s is not None]
        if recipe:
            try:
                result = rewriter.rewrite(model, recipe, input_size=32, latency=False)
            except rewriter.RewriteError:
                continue
            rewritten, flops = result.model, result.report.rows[-1].flops
        else:
            rewritten, flops = model, rewriter.analyze(model, 32).flops
        analysis = rewriter.analyze(rewritten, 32, flops=False)
        tested = [layer for layer in analysis.layers if layer.productive is not None]
        gap = abs(1 - min(tested[-1].r_in_min) / 32)
        points[tuple(next(iter(s)) + str(sorted(s[next(iter(s))].items())) for s in recipe)] = (
            flops, len(analysis.unproductive_layers), gap,
        )  # fmt: skip
    return points


def dominated(point, others) -> bool:
    return any(all(o <= p for o, p in zip(other, point, strict=True)) and other != point for other in others)


@pytest.fixture(scope="module")
def case():
    model, _ = rewriter.load_model("cifar_vgg11")
    result = rewriter.optimize_model(
        model, input_size=32, exclude=["remove-stem-downsampling"], search=SEARCH, dry_run=True
    )
    return result, brute_force(model)


pytestmark = pytest.mark.slow  # twelve real rewrites


def test_the_front_is_the_brute_force_front(case):
    result, points = case
    assert len(points) >= 8  # the space holds 12 compositions; what a strategy refuses is left out
    front = {p for p in points.values() if not dominated(p, points.values())}
    found = {(c.figures.flops, c.figures.unproductive, c.figures.gap) for c in result.front}
    assert found == front
    evaluated = {(c.figures.flops, c.figures.unproductive, c.figures.gap) for c in result.candidates if c.ok}
    assert evaluated == set(points.values())


def test_the_choice_is_the_brute_force_best(case):
    """Cost first (the default): the best by (unproductive layers, FLOPs, distance) among the compositions
    no more expensive than the baseline; fit first: by (unproductive layers, distance, FLOPs) among all; and
    each within a FLOPs budget that excludes the fit-first best."""
    result, points = case
    base = points[()]
    affordable = [p for p in points.values() if p[0] <= base[0]]
    f = result.chosen.figures
    assert (f.flops, f.unproductive, f.gap) == min(affordable, key=lambda p: (p[1], p[0], p[2]))
    best = min(points.values(), key=lambda p: (p[1], p[2], p[0]))
    g = result.choices["fit"].chosen.figures
    assert (g.flops, g.unproductive, g.gap) == best
    limit = best[0] - 1
    within = [p for p in points.values() if p[0] <= limit]
    for prefer, order in (("fit", lambda p: (p[1], p[2], p[0])), ("cost", lambda p: (p[1], p[0], p[2]))):
        choice = choose(result.candidates, objective="flops", budget=Budget(max_flops=limit), prefer=prefer)
        expected = min((p for p in within if prefer == "fit" or p[0] <= base[0]), key=order)
        h = choice.chosen.figures
        assert (h.flops, h.unproductive, h.gap) == expected, prefer
    assert all(c in pareto_front(result.candidates, "flops") for c in result.front)
