"""The search space comes from the strategies' declarations; a third-party strategy takes part through the
entry-point group."""

from __future__ import annotations

import textwrap

import pytest

import rewriter
from rewriter.engine import registry
from rewriter.optimize import composition_count, search_space


def test_the_default_space_is_what_the_strategies_declare():
    """truncate declares keep_blocks 0, 1 and its rule is a Literal (input, output); the stem strategy
    declares count None, 1 with a Literal mode; reposition-downsampling declares sites 0-4 and moves 0, 1.
    The others declare no search values and stay out (scale-width needs a factor or data, decompose-kernels
    and reorganize-stages are opt-in, skip-irrelevant-layers trains)."""
    space = {c.name: c for c in search_space()}
    assert list(space) == ["remove-stem-downsampling", "reposition-downsampling", "truncate"]
    assert space["truncate"].values == {"rule": ("input", "output"), "keep_blocks": (0, 1)}
    assert space["remove-stem-downsampling"].values == {"mode": ("strides", "cifar-stem"), "count": (None, 1)}
    assert space["reposition-downsampling"].values == {"site": (0, 1, 2, 3, 4), "move": (0, 1)}
    # each strategy is either left out or takes one of its configurations: (1 + 4) (1 + 10) (1 + 4)
    assert composition_count(tuple(space.values())) == 5 * 11 * 5 == 275
    assert composition_count(tuple(space.values()), max_steps=1) == 1 + 4 + 10 + 4


def test_an_included_strategy_tries_its_literal_choices_and_defaults():
    space = {c.name: c for c in search_space(include=["decompose-kernels"], exclude=["truncate"])}
    assert "truncate" not in space
    assert space["decompose-kernels"].values == {"block": ("dw-pw", "dw-gpw", "dw-rpw")}
    assert space["decompose-kernels"].order == 40


def test_given_values_replace_the_declared_ones_and_are_checked():
    space = {c.name: c for c in search_space(values={"truncate": {"keep_blocks": [0, 1, 2]}})}
    assert space["truncate"].values["keep_blocks"] == (0, 1, 2)
    widths = {c.name: c for c in search_space(values={"scale-width": {"factor": [0.5]}})}
    assert widths["scale-width"].configs == ({"factor": 0.5},) and widths["scale-width"].order == 60
    with pytest.raises(rewriter.RecipeError, match=r"keep_blocks: -1 is out of range"):
        search_space(values={"truncate": {"keep_blocks": [-1]}})
    with pytest.raises(rewriter.RecipeError, match="did you mean 'keep_blocks'"):
        search_space(values={"truncate": {"keep_block": [1]}})
    with pytest.raises(rewriter.RecipeError, match="did you mean 'truncate'"):
        search_space(exclude=["trunacte"])


PLUGIN = '''
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from rewriter.engine import Context, Edit, Plan, Strategy, param


@dataclass(frozen=True)
class DropPool(Strategy):
    """Replace the model's max-pool by Identity (a third-party rewrite for the test)."""

    name: ClassVar[str] = "drop-pool"
    search_order: ClassVar[int] = 25

    keep: bool = param(False, help="keep the pool", search=(False, True))

    def plan(self, model: nn.Module, context: Context) -> Plan:
        if self.keep:
            return Plan(self.name, self.params())
        return Plan(self.name, self.params(), (Edit("replace", "pool", "Identity", "the test"),))

    def apply(self, model: nn.Module, plan: Plan, context: Context) -> nn.Module:
        model.pool = nn.Identity()
        return model
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A package on sys.path with an installed distribution's metadata declaring the entry point."""
    (tmp_path / "droppool_plugin.py").write_text(PLUGIN)
    info = tmp_path / "droppool_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: droppool-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
        [rewriter.strategies]
        drop-pool = droppool_plugin:DropPool
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_BROKEN", dict(registry._BROKEN))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    yield


def test_a_third_party_strategy_registered_by_entry_point_takes_part(plugin):
    """tests.nets.Plain at 12 px: conv 3x3 (r 3), max-pool 2x2/2 (r 4, j 2), conv (r 8), conv (r 12): the last
    conv's input is based on 8. Without the pool the fields are 3, 5, 7: the last conv's input is based on 5."""
    from tests.nets import Plain

    assert "drop-pool" in rewriter.list_strategies()
    space = {c.name: c for c in search_space(exclude=["remove-stem-downsampling", "reposition-downsampling"])}
    assert space["drop-pool"].values == {"keep": (False, True)} and space["drop-pool"].order == 25
    result = rewriter.optimize_model(
        Plain(), input_size=12, exclude=["remove-stem-downsampling", "reposition-downsampling"]
    )
    by_label = {c.label: c for c in result.candidates}
    assert by_label["drop-pool(keep=False)"].status == "ok"
    assert by_label["drop-pool(keep=False)"].figures.final_r_min == (5, 5)
    assert by_label["drop-pool(keep=True)"].status == "duplicate"  # it changes nothing
    assert result.baseline.figures.final_r_min == (8, 8)
