"""Notes are returned, not appended to the context: a plan's notes and what ``apply()`` measured (an
``Applied``) reach the report, in that order, and a context carries no output channel."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import pytest
from torch import nn

import rewriter
from rewriter.engine import Applied, Context, Edit, Plan, Strategy, registry
from tests.nets import Plain


@dataclass(frozen=True)
class Measures(Strategy):
    """Test double: swaps Plain's head for a new one and says what it "measured" while doing so."""

    name: ClassVar[str] = "test-measures"

    def plan(self, model: nn.Module, context: Context) -> Plan:
        edits = (Edit("replace", "head", "Linear(4, 2)", "the test"),)
        return Plan(self.name, {}, edits, ("planned at 8x8",), new_modules=("head",))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> Applied:
        model.head = nn.Linear(4, 2)
        return Applied(model, ("measured: 3 of 4 right",))


@pytest.fixture
def registered(monkeypatch):
    registry._load_entry_points()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    rewriter.register_strategy(Measures)


def test_the_notes_of_the_plan_and_of_apply_reach_the_report(registered):
    result = rewriter.rewrite(Plain(), ["test-measures"], input_size=8, latency=False)
    assert isinstance(result.model.head, nn.Linear) and result.plans[0].notes == ("planned at 8x8",)
    assert result.report.notes == ("planned at 8x8", "measured: 3 of 4 right")
    assert result.report.to_json()["notes"] == ["planned at 8x8", "measured: 3 of 4 right"]


def test_a_context_has_no_notes_to_append_to():
    assert "notes" not in {f.name for f in dataclasses.fields(Context)}
