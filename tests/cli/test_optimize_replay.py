"""What ``rewriter optimize`` writes replays: the recipe in its report, and the one in its model file, given
to ``rewriter rewrite --recipe`` build the same architecture with the same classes (issue 20, item 2)."""

from __future__ import annotations

import json
from importlib.util import find_spec

import pytest
import torch
import yaml

import rewriter
from rewriter.engine.saving import load_model_file

from ..cli_runner import run

CASES = [
    ("resnet18", ["--num-classes", "10"]),
    ("cifar_vgg11", ["--num-classes", "7"]),
    pytest.param(
        "timm:resnet18",
        ["--num-classes", "10", "--exclude", "remove-stem-downsampling"],
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(find_spec("timm") is None, reason="needs rewriter[timm]"),
        ],
    ),
]


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "extra"), CASES)
def test_the_recipe_optimize_writes_replays_to_the_same_model(capsys, tmp_path, name, extra):
    classes = int(extra[1])
    saved, report_file = tmp_path / "opt.pt", tmp_path / "opt.json"
    code, _, err = run(capsys, "optimize", name, "--input-size", "32", *extra, "-o", str(saved),
                       "--report", str(report_file))  # fmt: skip
    assert code == 0, err
    report = json.loads(report_file.read_text())
    assert report["recipe"]["num_classes"] == classes and report["recipe"]["steps"]
    from_file = load_model_file(saved).recipe.to_dict()
    original = rewriter.load(str(saved)).eval()
    x = torch.zeros(2, 3, 32, 32)
    for which, recipe in (("report", report["recipe"]), ("model file", from_file)):
        recipe_file = tmp_path / f"{which}.yaml"
        recipe_file.write_text(yaml.safe_dump(recipe))
        replayed_file = tmp_path / f"{which}.pt"
        code, _, err = run(capsys, "rewrite", name, "--recipe", str(recipe_file), "--no-latency",
                           "-o", str(replayed_file))  # fmt: skip
        assert code == 0, (which, err)
        replayed = rewriter.load(str(replayed_file)).eval()
        assert parameters(replayed) == parameters(original) == report["chosen"]["params"], which
        assert replayed(x).shape == original(x).shape == (2, classes), which
