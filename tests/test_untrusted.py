"""Small files that take the machine down, and bounds a second door bypasses (issue 23, items 1 and 2).

Every hostile file is built here, in tmp_path; every step that would allocate gigabytes before the fix runs
under ``bounded_memory`` (1.5 GB of growth at most), so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import time

import pytest
import torch

import rewriter
from rewriter import InputSizeError, InvalidFileError, RecipeError, UsageError
from rewriter._untrusted import load_yaml, plain_fault, shown
from rewriter.engine.recipe import Recipe
from rewriter.models.sources import parse_model_args

from .models.test_fuzz import VALID, bounded_memory


def self_sharing_list(levels: int = 12, fan: int = 9) -> list:
    """``x = [x] * fan``, ``levels`` times: a few hundred bytes pickled, fan**levels items when walked."""
    value: list = []
    for _ in range(levels):
        value = [value] * fan
    return value


def alias_bomb(levels: int = 9) -> str:
    """A recipe whose ``input_size`` anchors and aliases expand to 9**levels scalars (about 400 bytes)."""
    lines = ["input_size:", "  - &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join([*lines, "steps: [truncate]"]) + "\n"


def test_a_bounded_repr_of_a_self_sharing_list_is_short_and_quick():
    bomb = self_sharing_list()
    start = time.perf_counter()
    text = shown(bomb, 60)
    assert len(text) <= 60 and text.startswith("[[[")
    assert shown(10**5000) == "<an integer of 16610 bits>"  # repr() of it raises ValueError
    assert time.perf_counter() - start < 1.0


def test_a_walk_of_a_self_sharing_list_stops_at_the_bound():
    assert "more than 100000 values" in plain_fault(self_sharing_list())
    assert plain_fault([[1, 2], {"a": "b"}]) is None
    nested: list = []
    for _ in range(40):
        nested = [nested]
    assert "deeper than 32 levels" in plain_fault(nested)


@pytest.mark.parametrize("field", ["rewriter", "recipe", "model_args", "report"])
def test_a_model_file_holding_a_self_sharing_list_is_refused_in_one_line(tmp_path, field):
    data = {**VALID, "base": dict(VALID["base"])}
    if field == "model_args":
        data["base"]["model_args"] = {"x": self_sharing_list()}
    elif field == "recipe":
        data["recipe"] = {**data["recipe"], "steps": self_sharing_list()}
    else:
        data[field] = self_sharing_list() if field == "rewriter" else {"x": self_sharing_list()}
    path = tmp_path / "bomb.pt"
    torch.save(data, path)
    assert path.stat().st_size < 20_000
    start = time.perf_counter()
    with bounded_memory(), pytest.raises(InvalidFileError, match="more than 100000 values") as caught:
        rewriter.load(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert time.perf_counter() - start < 10


def test_a_recipe_whose_aliases_expand_exponentially_is_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 700
    with bounded_memory(), pytest.raises(RecipeError, match="expands to more than 100000 values"):
        Recipe.from_yaml(path)


def test_yaml_that_python_cannot_hold_is_one_error_not_a_traceback():
    for text, message in [
        ("[" * 3000 + "]" * 3000, "nested"),
        ("x: " + "9" * 5000, "cannot be read"),
        ("x: " + "9" * 40, "more than 64"),
        ("x: [", "not valid YAML"),
        ("!!python/object/apply:os.system [ls]", "not valid YAML"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_yaml(text, where="r.yaml", error=RecipeError)


def test_a_history_longer_than_its_bound_is_refused_before_any_replay(tmp_path):
    step = {"recipe": Recipe.empty((8, 8)).to_dict(), "input_size": [8, 8]}
    data = {**VALID, "base": {**VALID["base"], "history": [step] * 65}}
    torch.save(data, tmp_path / "long.pt")
    with pytest.raises(InvalidFileError, match="65 rewrites, more than the bound of 64"):
        rewriter.load(tmp_path / "long.pt")
    data["base"]["history"] = [step] * 64  # at the bound: loads
    torch.save(data, tmp_path / "ok.pt")
    assert isinstance(rewriter.load(tmp_path / "ok.pt"), torch.nn.Module)


def test_the_class_bound_holds_at_every_door(tmp_path):
    with pytest.raises(UsageError, match="3000000 classes exceed the bound of 100000"):
        parse_model_args(["num_classes=3000000"])
    with bounded_memory(), pytest.raises(InputSizeError, match="exceed the bound of 100000"):
        rewriter.load_model("resnet18", model_args={"num_classes": 3_000_000})
    with bounded_memory(), pytest.raises(InputSizeError, match="exceed the bound of 100000"):
        rewriter.load_model("resnet18", num_classes=3_000_000)
    with pytest.raises(RecipeError, match="exceed the bound of 100000"):
        Recipe.from_dict({"num_classes": 3_000_000, "steps": ["truncate"]})
    for base in ({"num_classes": 3_000_000}, {"model_args": {"num_classes": 3_000_000}}):
        torch.save({**VALID, "base": {**VALID["base"], **base}}, tmp_path / "big.pt")
        with bounded_memory(), pytest.raises(InvalidFileError, match="exceed the bound of 100000"):
            rewriter.load(tmp_path / "big.pt")
    assert rewriter.load_model("resnet18", model_args={"num_classes": 100_000})[0].fc.out_features == 100_000


def test_a_timm_image_size_is_bounded_like_an_input_size():
    pytest.importorskip("timm")
    with bounded_memory(), pytest.raises(InputSizeError, match="30000x30000 exceeds the bound of 2048"):
        rewriter.load_model("timm:vit_tiny_patch16_224", model_args={"img_size": 30000})
