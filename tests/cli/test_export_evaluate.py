"""``rewriter export`` and ``rewriter evaluate`` on model files, and the empty recipe as "no change"
(issue 20, item 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import rewriter
from rewriter.engine.recipe import Recipe
from rewriter.models.sources import ModelSpec

from ..cli_runner import run

RED, BLUE = (255, 0, 0), (0, 0, 255)
IMAGENET_MEAN, IMAGENET_STD = (
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
)  # what the data normalises by (paper 000)


def colour_classifier() -> nn.Module:
    """Global average pooling and a linear layer set by hand: class a's logit is the red channel, class b's
    the blue one (after normalisation)."""
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        model[2].bias.zero_()
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "vgg.pt"
    code = rewriter.cli.main(["rewrite", "cifar_vgg11", "--input-size", "32", "--strategy", "truncate",
                              "--no-latency", "-o", str(path)])  # fmt: skip
    assert code == 0
    return path


def test_a_model_file_exported_to_onnx_computes_what_torch_does(capsys, tmp_path, model_file):
    onnxruntime = pytest.importorskip("onnxruntime")  # the extra rewriter[onnx]
    pytest.importorskip("onnxscript")

    target = tmp_path / "vgg.onnx"
    code, out, err = run(capsys, "export", str(model_file), "-o", str(target), "--json", "--no-latency")
    assert code == 0, err
    assert json.loads(out)["format"] == "onnx" and target.is_file()
    model = rewriter.load(str(model_file)).eval()
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        (got,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (batch, 10)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_model_file_exported_as_pt2_loads_with_torch_export(capsys, tmp_path, model_file):
    target = tmp_path / "vgg.pt2"
    code, _, err = run(capsys, "export", str(model_file), "-o", str(target), "--no-latency")
    assert code == 0, err
    program = torch.export.load(str(target)).module()
    model = rewriter.load(str(model_file)).eval()
    for batch in (2, 3):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x))


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [("vgg.txt", 2, "name the export OUT.pt2 or OUT.onnx"), ("exists.onnx", 1, "exists; pass --force")],
)
def test_export_refuses_a_bad_or_taken_name_in_one_line(capsys, tmp_path, model_file, name, code, message):
    (tmp_path / "exists.onnx").write_text("mine")
    got, _, err = run(capsys, "export", str(model_file), "-o", str(tmp_path / name))
    assert got == code and message in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "exists.onnx").read_text() == "mine"


def test_an_empty_recipe_writes_the_model_unchanged(capsys, tmp_path):
    recipe = tmp_path / "none.yaml"
    recipe.write_text("input_size: 16\nsteps: []\n")
    code, out, err = run(capsys, "rewrite", "tests.nets:Plain", "--recipe", str(recipe), "--no-latency",
                         "-o", str(tmp_path / "same.pt"))  # fmt: skip
    assert code == 0, err
    assert "the recipe has no steps: the model is unchanged" in out
    base = rewriter.load_model("tests.nets:Plain")[0]
    same = rewriter.load(str(tmp_path / "same.pt"), trust_pickle=True)
    assert [p.shape for p in same.parameters()] == [p.shape for p in base.parameters()]
    assert rewriter.rewrite(base, {"steps": []}, input_size=16, latency=False).plans == ()


def test_optimize_writes_an_onnx_model(capsys, tmp_path):
    pytest.importorskip("onnxscript")  # the extra rewriter[onnx]: without it the command says so (exit 1)
    target = tmp_path / "vgg.onnx"
    code, _, err = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--exclude", "remove-stem-downsampling",
                       "--exclude", "reposition-downsampling", "--format", "onnx", "-o", str(target))  # fmt: skip
    assert code == 0, err
    assert "max |exported - PyTorch|" in err and target.stat().st_size > 10_000


def image_folder(root, split: dict[str, list[tuple[int, int, int]]]) -> None:
    from PIL import Image

    for label, colours in split.items():
        (root / label).mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (4, 4), colour).save(root / label / f"{i}.png")


def cross_entropy(colour: tuple[int, int, int], label: int) -> float:
    """By hand: the logits are the normalised red and blue values of a solid image."""
    logits = [(colour[c] / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in (0, 2)]
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def test_evaluate_gives_the_accuracy_worked_out_by_hand(capsys, tmp_path):
    """A red image scores a, a blue one b. Test split: a holds 3 red and 1 blue image (3 of 4 right), b 2
    blue and 2 red (2 of 4): accuracy 5/8, per class 0.75 and 0.5."""
    data = tmp_path / "colours"
    image_folder(data / "train", {"a": [RED], "b": [BLUE]})
    image_folder(data / "test", {"a": [RED, RED, RED, BLUE], "b": [BLUE, BLUE, RED, RED]})
    path = tmp_path / "colours.pt"
    spec = ModelSpec("tests.cli.test_export_evaluate:colour_classifier", "import")
    rewriter.save(colour_classifier(), path, spec=spec, recipe=Recipe.empty((4, 4)), input_size=(4, 4))
    code, out, err = run(capsys, "evaluate", str(path), "--data", f"imagefolder:{data}", "--batch-size", "3",
                         "--trust-pickle",
                         "--json", "--report", str(tmp_path / "score.json"))  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 8 and result["accuracy"] == 5 / 8
    assert [(c["class"], c["images"], c["accuracy"]) for c in result["per_class"]] == [
        ("a", 4, 0.75),
        ("b", 4, 0.5),
    ]
    loss = (3 * cross_entropy(RED, 0) + cross_entropy(BLUE, 0) + 2 * cross_entropy(BLUE, 1)
            + 2 * cross_entropy(RED, 1)) / 8  # fmt: skip
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["images_per_s"] > 0 and json.loads((tmp_path / "score.json").read_text()) == result


def test_evaluate_refuses_a_head_that_does_not_fit_the_data(capsys, tmp_path):
    path = tmp_path / "colours.pt"
    spec = ModelSpec("tests.cli.test_export_evaluate:colour_classifier", "import")
    rewriter.save(colour_classifier(), path, spec=spec, recipe=Recipe.empty((4, 4)), input_size=(4, 4))
    code, _, err = run(capsys, "evaluate", str(path), "--data", "synthetic:20", "--trust-pickle")
    assert code == 1 and "outputs 2 classes but synthetic:20 has 10" in err
    assert len([line for line in err.splitlines() if line.startswith("error")]) == 1


def test_score_refuses_a_head_that_does_not_fit_the_data():
    from rewriter.lab.data import DataError, load_data
    from rewriter.lab.scoring import score

    with pytest.raises(DataError, match=r"the model returns \[20, 2\], the data synthetic:20 has 10 classes"):
        score(colour_classifier(), load_data("synthetic:20", 4), batch_size=20)
