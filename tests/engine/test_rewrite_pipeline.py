"""The pipeline: a step that breaks an invariant stops the run with the reason, and nothing is written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

import rewriter
from rewriter.cli import main
from rewriter.engine import Edit, Plan, Strategy, register_strategy
from rewriter.engine import registry as strategy_module


@dataclass(frozen=True)
class Reinitialise(Strategy):
    """Test double: silently re-initialises a kept layer (breaks invariant 2)."""

    name: ClassVar[str] = "test-reinitialise"

    def plan(self, model, context):
        return Plan(self.name, {}, (Edit("set", "conv1", "nothing, honestly", ""),))

    def apply(self, model, plan, context):
        nn.init.zeros_(model.conv1.weight)
        return model


@dataclass(frozen=True)
class Break(Strategy):
    """Test double: returns a model that cannot run (breaks invariant 1)."""

    name: ClassVar[str] = "test-break"

    def plan(self, model, context):
        return Plan(self.name, {}, (Edit("replace", "fc", "Linear(512, 10) -> Linear(3, 10)", ""),))

    def apply(self, model, plan, context):
        model.fc = nn.Linear(3, 10)
        return model


@dataclass(frozen=True)
class Mutate(Strategy):
    """Test double: changes the model it is planning for, which must never happen (invariant 4)."""

    name: ClassVar[str] = "test-mutate"

    def plan(self, model, context):
        with torch.no_grad():
            model.fc.bias.add_(1.0)
        return Plan(self.name, {})

    def apply(self, model, plan, context):
        return model


@pytest.fixture
def doubles():
    for cls in (Reinitialise, Break, Mutate):
        register_strategy(cls)
    yield
    for cls in (Reinitialise, Break, Mutate):
        strategy_module._REGISTRY.pop(cls.name, None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "test-reinitialise",
            "steps[0] test-reinitialise: invariant 2 broken: kept tensor 'conv1.weight' differs",
        ),
        ("test-break", "steps[0] test-break: invariant 1 broken, the new model does not run at 32x32"),
        ("test-mutate", "invariant 4 broken, the input model was modified: tensors changed: fc.bias"),
    ],
)
def test_a_step_that_breaks_an_invariant_stops_the_run(doubles, name, message):
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    with pytest.raises(rewriter.RewriteError) as info:
        rewriter.rewrite(model, {"steps": [name]}, input_size=32, latency=False)
    assert str(info.value).startswith(message)


def test_nothing_is_written_when_a_step_fails(doubles, tmp_path, capsys):
    out = tmp_path / "out.pt"
    code = main(
        [
            "rewrite",
            "resnet18",
            "--num-classes",
            "10",
            "--input-size",
            "32",
            "--strategy",
            "remove-stem-downsampling",
            "--strategy",
            "test-break",
            "-o",
            str(out),
            "--report",
            str(tmp_path / "r.json"),
            "--no-latency",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "error: steps[1] test-break: invariant 1 broken" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_a_third_party_strategy_is_found_by_name(doubles):
    assert {"test-break", "test-reinitialise", "truncate"} <= set(rewriter.list_strategies())
    with pytest.raises(
        rewriter.RecipeError, match="unknown strategy 'test-brake'; did you mean 'test-break'"
    ):
        rewriter.get_strategy("test-brake")


def test_the_input_size_comes_from_the_recipe_or_the_caller():
    model, _ = rewriter.load_model("cifar_vgg11")
    with pytest.raises(rewriter.RewriteError, match="no input size"):
        rewriter.rewrite(model, {"steps": ["truncate"]}, latency=False)
    result = rewriter.rewrite(model, {"input_size": 32, "steps": ["truncate"]}, latency=False)
    assert result.report.input_size == (32, 32)


def test_the_report_gives_deltas_against_the_baseline():
    model, _ = rewriter.load_model("cifar_vgg16")
    report = rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=32, latency=False).report
    base, after = report.rows
    # kept: convs 1-7 (+BN) of VGG16, head Linear(256, 10); hand count of the parameters:
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    expected = sum(cin * cout * 9 + cout + 2 * cout for cin, cout in convs) + 256 * 10 + 10
    assert after.params == expected
    assert report.to_json()["rows"][1]["delta"]["params_percent"] == round(
        100 * (expected - base.params) / base.params, 2
    )
    assert (base.border_layer_min, after.border_layer_min) == ("features.23", None)
    assert (base.unproductive, after.unproductive) == (9, 0)


def test_latency_is_measured_per_row():
    model, _ = rewriter.load_model("cifar_vgg11")
    report = rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=32).report
    assert all(row.latency_ms > 0 for row in report.rows)


def test_a_rewrite_that_changes_nothing_still_returns_a_copy():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    result = rewriter.rewrite(
        model, {"steps": ["truncate"]}, input_size=224, latency=False, measure_cost=False
    )
    assert result.plans[0].is_noop and result.model is not model


def test_a_broken_third_party_strategy_does_not_break_the_others(monkeypatch):
    import importlib.metadata

    class Broken:
        name, value = "broken", "nonexistent_module:Strategy"

        def load(self):
            raise ModuleNotFoundError("No module named 'nonexistent_module'")

    real = importlib.metadata.entry_points
    monkeypatch.setattr(strategy_module, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(strategy_module, "_BROKEN", {})
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [*real(group=group), Broken()])
    assert "truncate" in rewriter.list_strategies() and "broken" not in rewriter.list_strategies()
    with pytest.raises(rewriter.RecipeError, match="strategy 'broken' is installed but does not load"):
        rewriter.get_strategy("broken")
