"""Contracts every registered strategy keeps, checked on a model where it changes something."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import rewriter
from rewriter.engine import Plan, get_strategy, list_strategies, parameters
from rewriter.engine.strategy import summary
from rewriter.lab.data import load_data

# One case per strategy: (model, input size, parameters) where the strategy is not a no-op.
CASES = {
    "truncate": ("cifar_vgg11", 32, {}),
    "remove-stem-downsampling": ("resnet18", 32, {}),
    "reposition-downsampling": ("resnet18", 32, {"site": 1, "move": 1}),
    "reorganize-stages": ("cifar_vgg11", 32, {}),
    "decompose-kernels": ("cifar_vgg11", 32, {"block": "dw-rpw"}),
    "scale-width": ("resnet18", 32, {"factor": 0.5}),
    "skip-irrelevant-layers": ("relevance_cnn", 12, {"epochs": 1, "maps": 4, "top": 5}),
}
# Strategies that need data get this small, generated-on-the-spot set.
NEEDS_DATA = {"skip-irrelevant-layers"}
# scale-width rebuilds every conv, linear and batch norm at the new width (tests/test_scale_width.py checks
# that the kept channels carry their weights); skip-irrelevant-layers trains a new router and a re-initialised
# backbone, as paper 004's CNN 2 and CNN 3; the others keep most tensors as they are.
KEEPS_TENSORS = {name: name not in ("scale-width", "skip-irrelevant-layers") for name in CASES}


def run_case(name: str, model: torch.nn.Module, progress=None) -> rewriter.Result:
    _, size, params = CASES[name]
    data = load_data("digits:200", size) if name in NEEDS_DATA else None
    return rewriter.rewrite(model, {"steps": [{name: params}]}, input_size=size, latency=False, data=data,
                            progress=progress)  # fmt: skip


def build(name: str) -> torch.nn.Module:
    model_name, size, _ = CASES[name]
    args = {"width": 8, "input_size": size} if model_name == "relevance_cnn" else None
    return rewriter.load_model(model_name, num_classes=10, model_args=args)[0]


def test_every_registered_strategy_has_a_contract_case():
    assert set(list_strategies()) == set(CASES)


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    name = request.param
    model = build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    structure = repr(model)
    lines = PROGRESS.setdefault(name, [])
    return name, model, before, structure, run_case(name, model, lines.append), CASES[name][1]


PROGRESS: dict[str, list[str]] = {}  # the progress lines each case's rewrite reported


def test_the_input_model_is_unchanged(case):
    _, model, before, structure, _, _ = case
    state = model.state_dict()
    assert set(state) == set(before)
    assert all(torch.equal(before[k], state[k]) for k in before)
    assert repr(model) == structure


def test_the_output_model_runs_and_gives_class_scores(case):
    _, _, _, _, result, size = case
    out = result.model.eval()(torch.randn(3, 3, size, size))
    assert out.shape == (3, 10)


def test_the_strategy_changes_something(case):
    """The plan says it changes something, and the model shows it: its structure or its tensors differ."""
    _, _, before, structure, result, _ = case
    assert not result.plans[0].is_noop
    state = result.model.state_dict()
    same_tensors = set(state) == set(before) and all(torch.equal(before[k], state[k]) for k in before)
    assert repr(result.model) != structure or not same_tensors


def _old_key(plan: Plan, key: str) -> str:
    return next((m.old + key[len(m.new) :] for m in plan.moved if key.startswith(m.new)), key)


def test_kept_weights_are_identical(case):
    """Every tensor the plan does not declare new is the input model's, bit for bit; and a declaration of
    new modules is no blanket exemption: every module declared new has a parameter that is absent from the
    input model or differs from it (so a strategy that rebuilds everything, like scale-width, is checked)."""
    name, _, before, _, result, _ = case
    plan = result.plans[0]
    kept, changed, fresh = 0, set(), 0
    declared = {m for m in plan.new_modules if any(True for _ in result.model.get_submodule(m).parameters())}
    for key, tensor in result.model.state_dict().items():
        old_key = _old_key(plan, key)
        owner = next((m for m in plan.new_modules if key == m or key.startswith(m + ".")), None)
        if owner is None:
            assert torch.equal(before[old_key], tensor), key
            kept += 1
        elif (
            old_key not in before
            or before[old_key].shape != tensor.shape
            or not torch.equal(before[old_key], tensor)
        ):
            changed.add(owner)
            fresh += 1
    assert declared <= changed, f"declared new but identical: {sorted(declared - changed)}"
    assert kept > 10 if KEEPS_TENSORS[name] else fresh > 10


def test_long_work_reports_progress(case):
    """A strategy that trains says so epoch by epoch (paper 004's three trainings take minutes)."""
    name = case[0]
    epochs = [line for line in PROGRESS[name] if ": epoch " in line]
    if name == "skip-irrelevant-layers":  # 1 epoch each: CNN 1 (untrained input), the router, the backbone
        assert [line.split(":")[0] for line in epochs] == ["CNN 1 (the input model)", "router (CNN 2)",
                                                           "backbone (CNN 3)"]  # fmt: skip
    else:
        assert epochs == []


def test_a_routed_model_reports_its_cost_per_image(case):
    """The report's FLOPs per image of a model that routes each image lie between the router alone and the
    router plus every unit; a static model has none."""
    name, _, _, _, result, _ = case
    row = result.report.rows[-1]
    if name != "skip-irrelevant-layers":
        assert row.flops_per_image is None
        return
    stats = result.model.measured
    assert stats.flops_router < row.flops_per_image <= stats.flops_static + stats.flops_router
    assert any("routed per image" in note for note in result.report.to_json()["notes"])


def test_the_plan_round_trips_through_yaml(case):
    plan = case[4].plans[0]
    text = yaml.safe_dump(plan.to_dict())
    assert Plan.from_dict(yaml.safe_load(text)) == plan


def test_the_report_json_is_identical_when_run_twice(case):
    name, model, _, _, result, _ = case
    again = run_case(name, model)
    assert json.dumps(again.report.to_json()) == json.dumps(result.report.to_json())


@pytest.mark.parametrize("name", sorted(CASES))
def test_strategies_document_themselves(name):
    cls = get_strategy(name)
    assert summary(cls)
    assert all(p.help for p in parameters(cls))
    assert cls().params() == {p.name: p.default for p in parameters(cls)}
