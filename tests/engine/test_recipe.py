"""Recipes: parsing, overrides, and an exact message for every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

import rewriter
from rewriter.engine.recipe import Recipe

MALFORMED = [
    (
        "steps:\n  - trunacte: {}\n",
        "trim.yaml steps[0].trunacte: unknown strategy 'trunacte'; did you mean 'truncate'?",
    ),
    (
        "steps:\n  - remove-stem-downsampling: {}\n  - truncate: {rul: output}\n",
        "trim.yaml steps[1].truncate.rul: unknown parameter; did you mean 'rule'?",
    ),
    (
        "steps:\n  - truncate: {rule: inptu}\n",
        "trim.yaml steps[0].truncate.rule: expected one of 'input', 'output', got 'inptu'; did you mean 'input'?",
    ),
    (
        "steps:\n  - truncate: {keep_blocks: two}\n",
        "trim.yaml steps[0].truncate.keep_blocks: expected int, got 'two'",
    ),
    (
        "steps:\n  - truncate: {feature_size: 1.5}\n",
        "trim.yaml steps[0].truncate.feature_size: expected int | null, got 1.5",
    ),
    ("input_size: 32\n", "trim.yaml: missing 'steps' (a list of '- strategy-name: {parameters}')"),
    ("stpes:\n  - truncate: {}\n", "trim.yaml: unknown key 'stpes'; did you mean 'steps'?"),
    ("steps: []\n", "trim.yaml steps: expected a non-empty list of strategies, got []"),
    (
        "steps:\n  - {truncate: {}, remove-stem-downsampling: {}}\n",
        "trim.yaml steps[0]: expected '- strategy-name: {parameters}', got",
    ),
    (
        "steps:\n  - truncate: output\n",
        "trim.yaml steps[0].truncate: parameters must be a mapping, got 'output'",
    ),
    (
        "input_size: big\nsteps: [truncate]\n",
        "trim.yaml input_size: expected a positive size like 32, 64,48, 64x48 or [64, 48]; got 'big'",
    ),
    ("steps: [truncate\n", "trim.yaml: not valid YAML (line 2, column 1)"),
    ("- 3\n- 4\n", "trim.yaml steps[0]: expected '- strategy-name: {parameters}', got 3"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_recipes_say_where_and_what(tmp_path, text, message):
    path = tmp_path / "trim.yaml"
    path.write_text(text)
    with pytest.raises(rewriter.RecipeError) as info:
        Recipe.from_yaml(path).strategies()
    assert str(info.value).startswith(message)


def test_a_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(rewriter.RecipeError, match=r"cannot read recipe .*nope\.yaml"):
        Recipe.from_yaml(tmp_path / "nope.yaml")


def test_the_design_doc_recipe_parses(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "input_size: 32\nnum_classes: 10\nsteps:\n  - remove-stem-downsampling: {}\n  - truncate: {head: gap-linear}\n"
    )
    recipe = Recipe.from_yaml(path)
    assert recipe.input_size == (32, 32) and recipe.num_classes == 10
    assert [s.name for s in recipe.strategies()] == ["remove-stem-downsampling", "truncate"]


def test_command_line_values_override_the_recipe():
    recipe = Recipe.from_dict(
        {"input_size": 32, "num_classes": 10, "steps": [{"truncate": {"rule": "input"}}]}
    )
    changed = recipe.with_overrides(
        input_size=(64, 48), num_classes=100, params={"truncate": {"rule": "output"}}
    )
    assert changed.input_size == (64, 48) and changed.num_classes == 100
    assert changed.steps[0].params == {"rule": "output"}


def test_the_resolved_recipe_in_the_report_has_every_parameter():
    model, _ = rewriter.load_model("cifar_vgg11")
    result = rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=32, latency=False)
    assert result.report.recipe == {
        "input_size": [32, 32],
        "num_classes": None,
        "steps": [
            {"truncate": {"rule": "input", "feature_size": None, "keep_blocks": 0, "head": "gap-linear"}}
        ],
    }


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].glob("examples/recipes/*.yaml")), ids=str)
def test_the_example_recipes_are_valid(path):
    recipe = Recipe.from_yaml(path, allow_empty=True)
    assert recipe.input_size == (32, 32)
    assert len(recipe.strategies()) == len(recipe.steps)  # every step names a strategy with valid parameters
    assert recipe.steps or path.stem == "baseline"


def test_the_reorganize_then_decompose_example_rewrites_vgg16():
    path = Path(__file__).parents[2] / "examples" / "recipes" / "reorganize-then-decompose.yaml"
    model, _ = rewriter.load_model("cifar_vgg16")
    result = rewriter.rewrite(model, path, latency=False)
    assert [row.label for row in result.report.rows] == [
        "baseline",
        "1. reorganize-stages",
        "2. decompose-kernels",
    ]
    assert result.report.rows[2].params < result.report.rows[1].params / 10
