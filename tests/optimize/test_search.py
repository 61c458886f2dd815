"""The search: one candidate at a time on the meta device, failures dropped with their reasons, the chosen
candidate verified on the real weights."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

import rewriter
from rewriter.analysis import Analysis
from rewriter.engine import Context, Edit, Plan, Strategy, param, registry
from tests.nets import Plain

ONLY = ["remove-stem-downsampling", "reposition-downsampling", "truncate"]


@dataclass(frozen=True)
class CutLastConv(Strategy):
    """Replace Plain's last conv by Identity, and (the defect under test) double the first conv's weights
    in place without declaring it: on the meta device nothing shows, on the real weights invariant 2 does."""

    name: ClassVar[str] = "cut-last-conv"
    tamper: bool = param(True, help="also change a kept tensor", search=(True,))

    def plan(self, model: nn.Module, context: Context) -> Plan:
        return Plan(self.name, self.params(), (Edit("replace", "c3", "Identity", "the test"),))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        model.c3 = nn.Identity()
        if self.tamper:
            with torch.no_grad():
                model.c1.weight.mul_(2)
        return model


@dataclass(frozen=True)
class Broken(Strategy):
    """A third-party strategy with a bug: its apply raises."""

    name: ClassVar[str] = "broken"
    on: bool = param(True, help="fail", search=(True,))

    def plan(self, model: nn.Module, context: Context) -> Plan:
        return Plan(self.name, self.params(), (Edit("replace", "c2", "nothing", "the test"),))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        raise KeyError("c9")


@pytest.fixture
def registered(monkeypatch):
    registry._load_entry_points()  # into the real registry, before the copy the test may extend
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    rewriter.register_strategy(CutLastConv)
    rewriter.register_strategy(Broken)


def test_a_candidate_that_fails_on_the_real_weights_is_dropped_and_the_next_chosen(registered):
    """Plain at 6 px: conv 3 (r 3), pool (4), conv (8), conv: its input is based on 8 > 6, one unproductive
    layer. Without the last conv, the last tested layer sees 4 of 6: no unproductive layer, the better
    candidate on every count; but its rewrite changes a kept tensor, so it is dropped and the baseline,
    the only candidate left, is chosen."""
    result = rewriter.optimize_model(Plain(), input_size=6, exclude=[*ONLY, "broken"])
    cut = next(c for c in result.candidates if c.label == "cut-last-conv(tamper=True)")
    assert cut.figures.unproductive == 0 and cut.figures.final_r_min == (4, 4)
    assert cut.status == "dropped" and "invariant 2 broken: kept tensor 'c1.weight'" in cut.reason
    assert result.baseline.figures.unproductive == 1
    assert result.chosen.index == 0 and result.chosen.verified


def test_a_strategy_that_raises_is_dropped_with_the_error_and_where_it_came_from(registered):
    result = rewriter.optimize_model(Plain(), input_size=6, exclude=[*ONLY, "cut-last-conv"], dry_run=True)
    broken = next(c for c in result.candidates if c.label == "broken(on=True)")
    assert broken.status == "dropped"
    assert broken.reason.startswith("broken: KeyError: 'c9' (test_search.py:")


def test_only_the_models_on_the_current_path_are_kept():
    """Depth first: at any time the search holds the analyses of the models on one path (the baseline and
    at most one model per strategy of the space), not one per candidate."""
    live = []

    def analyses() -> int:
        return sum(type(o) is Analysis for o in gc.get_objects())

    def count(candidate) -> None:
        if candidate.index % 3 == 0:  # a scan of every object is slow
            live.append(analyses())

    gc.collect()
    before = analyses()  # the ones earlier tests in this process still hold
    model, _ = rewriter.load_model("cifar_vgg11")
    result = rewriter.optimize_model(model, input_size=32, exclude=ONLY[:1], dry_run=True, progress=count)
    assert len(result.candidates) > 30
    assert max(live) - before <= len(result.space) + 3


def test_the_latency_objective_times_every_candidate():
    result = rewriter.optimize_model(
        Plain(), input_size=16, objective="latency", exclude=ONLY[:2], dry_run=True
    )
    assert all(c.figures.latency_ms > 0 for c in result.candidates if c.ok)
    costs = [c.figures.latency_ms for c in result.front]
    assert costs == sorted(costs)


def test_options_out_of_range_are_refused():
    with pytest.raises(
        rewriter.optimize.OptimizeError, match="objective must be one of flops, params, latency"
    ):
        rewriter.optimize_model(Plain(), input_size=16, objective="speed")
    with pytest.raises(rewriter.optimize.OptimizeError, match="max_flops: expected a positive number"):
        rewriter.optimize_model(Plain(), input_size=16, max_flops=-1)
    with pytest.raises(
        rewriter.optimize.OptimizeError, match="holds 275 compositions, more than max_candidates=10"
    ):
        rewriter.optimize_model(Plain(), input_size=16, max_candidates=10)
