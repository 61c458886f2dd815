"""The optimizer and the sweep find what they need by the strategies' declarations, not by their names: a
third-party width strategy gets ``width_factors`` (and measures its own factor on data), a third-party tail
cutter is the one the sweep shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest
from torch import nn

import rewriter
from rewriter.engine import Context, Cut, Edit, Plan, Strategy, TailCut, WidthScaling, param, registry
from rewriter.optimize import sweep
from tests.nets import Plain, conv

WIDE = 8  # the output channels of Slim's conv before any thinning


def slim() -> nn.Module:
    """conv 3x3 3 -> 8 (no bias) -> global pool -> Linear(8, 2): 216 + 18 = 234 parameters."""
    return nn.Sequential(conv(3, WIDE), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDE, 2))


def slim_params(channels: int) -> int:
    """By hand: the conv's 3 * 9 weights per output channel, the head's 2 weights per channel and 2 biases."""
    return 27 * channels + 2 * channels + 2


@dataclass(frozen=True)
class ThinOut(Strategy):
    """A third-party width strategy under a name of its own: scales Slim's conv and head to ``ratio``; left
    unset, it measures the ratio from the data (1 per 16 images)."""

    name: ClassVar[str] = "thin-out"
    width_scaling: ClassVar[WidthScaling] = WidthScaling("ratio", measured_from="count of images")
    search_order: ClassVar[int] = 60

    ratio: float | None = param(None, help="the width ratio (default: measured)", low=1 / 64, high=16)

    def plan(self, model: nn.Module, context: Context) -> Plan:
        ratio, notes = self.ratio, ()
        if ratio is None:
            if context.data is None:
                raise self.refuse("needs data")
            ratio = len(context.data) / 16
            notes = (f"{len(context.data)} images: ratio {ratio}",)
        channels = round(WIDE * ratio)
        edits = (Edit("resize", "0", f"{WIDE} -> {channels} outputs", "the test"),)
        return Plan(self.name, {**self.params(), "ratio": ratio}, edits, notes, new_modules=("0", "3"))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        channels = round(WIDE * plan.params["ratio"])
        device = model[0].weight.device
        model[0], model[3] = conv(3, channels).to(device), nn.Linear(channels, 2).to(device)
        return model


@dataclass(frozen=True)
class Chop(Strategy):
    """A third-party tail cutter: replaces Plain's last conv (its border layer, when it has one) by Identity."""

    name: ClassVar[str] = "chop"
    tail_cut: ClassVar[TailCut] = TailCut(rule_param="border")

    border: Literal["input", "output"] = param("input", help="the border rule")

    def plan(self, model: nn.Module, context: Context) -> Plan:
        if context.analysis.border_layer_min is None:
            return Plan(self.name, self.params(), notes=("nothing to chop",))
        return Plan(
            self.name, self.params(), (Edit("remove", "c3", "Conv2d", "the test"),), cut=Cut("c2", "")
        )

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        model.c3 = nn.Identity()
        return model


@dataclass(frozen=True)
class Misdeclared(Strategy):
    """Declares a width parameter it does not have."""

    name: ClassVar[str] = "misdeclared"
    width_scaling: ClassVar[WidthScaling] = WidthScaling("factor")

    ratio: float = param(1.0, help="the width ratio")


@pytest.fixture
def registered(monkeypatch):
    registry._load_entry_points()  # into the real registry, before the copy the test extends
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    rewriter.register_strategy(ThinOut)
    rewriter.register_strategy(Chop)


def _all_but(name: str) -> list[str]:
    return [other for other in rewriter.list_strategies() if other != name]


def test_a_third_party_width_strategy_searches_the_width_factors(registered):
    """``width_factors`` went to 'scale-width' by name; now to every strategy that declares a width factor.
    Ratio 0.5 keeps 4 channels, 0.25 keeps 2; the one within 100 parameters is chosen and rewritten for real."""
    result = rewriter.optimize_model(
        slim(), input_size=8, width_factors=(0.5, 0.25), max_params=100, exclude=_all_but("thin-out")
    )
    assert (slim_params(8), slim_params(4), slim_params(2)) == (234, 118, 60)
    params = {c.label: c.figures.params for c in result.candidates if c.ok}
    assert params == {"baseline": 234, "thin-out(ratio=0.5)": 118, "thin-out(ratio=0.25)": 60}
    assert result.chosen.label == "thin-out(ratio=0.25)" and result.chosen.verified
    assert result.model[0].out_channels == 2


def test_a_third_party_width_strategy_measures_its_factor_on_a_trained_baseline(registered):
    """With data and a trained baseline the optimizer asks the strategy for its factor once (8 images: 0.5)
    and searches it; its declaration names what the factor is measured from."""
    images = list(range(8))
    result = rewriter.optimize_model(
        slim(), input_size=8, data=images, pretrained=True, exclude=_all_but("thin-out"), dry_run=True
    )
    assert result.notes == ("width factor 0.5 from the baseline's count of images: 8 images: ratio 0.5",)
    labels = [c.label for c in result.candidates]
    assert labels == ["baseline", "thin-out(ratio=0.5)"]
    assert result.candidates[1].figures.params == slim_params(4)


def test_an_untrained_baseline_gets_no_measured_width_and_says_why(registered):
    result = rewriter.optimize_model(
        slim(), input_size=8, data=[0] * 8, exclude=_all_but("thin-out"), dry_run=True
    )
    assert result.notes == (
        "width not searched: count of images needs a trained baseline (give its `weights`, or `width_factors`)",
    )
    assert [c.label for c in result.candidates] == ["baseline"]


def test_a_declaration_that_names_a_missing_parameter_is_refused(registered):
    rewriter.register_strategy(Misdeclared)
    with pytest.raises(
        rewriter.RecipeError, match=r"'misdeclared' declares width_scaling.param='factor', which is not one"
    ):
        rewriter.optimize_model(slim(), input_size=8, width_factors=(0.5,), exclude=_all_but("thin-out"))


@pytest.fixture
def only_chop(registered):
    del registry._REGISTRY["truncate"]  # the copy's: the sweep must find the cutter by its declaration


def test_the_sweep_shows_and_advises_the_strategy_that_declares_a_tail_cut(only_chop):
    """Plain at 6 px: c3's input field 8 > 6, one unproductive layer; chopped, 108 + 144 + 10 = 262
    parameters remain. At 16 px nothing is unproductive."""
    rows = sweep(Plain(), [6, 16]).rows
    assert rows[0].truncated.params == 108 + 144 + 10 and rows[0].truncate_note == "cut after 'c2'"
    assert rows[0].advice == "1 unproductive from c3: chop (keeps 262 params), or train at 16 px"
    assert rows[1].truncated is None and rows[1].truncate_note == "nothing to cut"


def test_the_sweep_names_the_cutters_border_rule_parameter(only_chop):
    """Plain at 8 and 10 px: under the input rule c3 sees 8, productive; its own output field, 12, exceeds
    both sizes, so the output rule finds one unproductive layer, and the summary says how to cut it."""
    result = sweep(Plain(), [8, 10], name="plain")
    assert [r.unproductive_output for r in result.rows] == [1, 1]
    assert "--strategy chop -p chop.border=output" in result.summary()
