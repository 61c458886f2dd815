"""The data-driven commands end to end on generated data: train -> saturation / probe -> rewrite scale-width."""

from __future__ import annotations

import json

import matplotlib.image
import pytest
import torch

import rewriter
from rewriter.analysis import scaled
from rewriter.cli import main
from rewriter.engine.saving import load_model_file

from ..cli_runner import run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "vgg.pt"
    code = main(
        ["train", "cifar_vgg11", "--data", "synthetic:96", "--epochs", "1", "--max-batches", "2",
         "--batch-size", "32", "--lr", "0.01", "-o", str(path)]
    )  # fmt: skip
    assert code == 0
    return path


def test_train_writes_a_model_file_with_its_history(trained):
    loaded = load_model_file(trained)
    history = loaded.metadata["report"]["training"]["history"]
    assert len(history) == 1 and history[0]["lr"] == 0.01
    assert loaded.input_size == (32, 32)  # synthetic's own resolution
    assert loaded.model(torch.randn(1, 3, 32, 32)).shape == (1, 10)  # the head follows the data's classes
    assert (trained.parent / "vgg.pt.ckpt").is_file()


def test_train_refuses_to_overwrite_before_training(trained, capsys):
    code, _, err = run(capsys, "train", "cifar_vgg11", "--data", "synthetic:32", "-o", str(trained))
    assert code == 1 and "exists; pass --force" in err


def test_saturation_json_table_and_plot(trained, capsys, tmp_path):
    plot = tmp_path / "sat.png"
    code, out, _ = run(
        capsys, "saturation", str(trained), "--data", "synthetic:64", "--json", "--plot", str(plot)
    )
    assert code == 0
    data = json.loads(out)
    assert data["images"] == 64 and data["delta"] == 0.99
    assert [layer["name"] for layer in data["layers"]][:2] == ["features.0", "features.4"]
    assert data["border_layer_min"] == "features.18"  # VGG11 at 32 px (analysis, not data)
    first = data["layers"][0]
    assert first["features"] == 64 and 0 < first["saturation"] <= 1 and first["r_in_min"] == [1, 1]
    assert data["s_mu"] == pytest.approx(sum(layer["saturation"] for layer in data["layers"]) / 9, abs=1e-5)
    assert matplotlib.image.imread(plot).shape[2] in (3, 4)
    code, out, _ = run(capsys, "saturation", str(trained), "--data", "synthetic:64", "--batches", "1")
    assert code == 0 and "s_mu" in out and "features.25" in out and "border layer b_min features.18" in out


def test_probe_json_and_plot(trained, capsys, tmp_path):
    plot = tmp_path / "probes.png"
    code, out, _ = run(
        capsys,
        "probe",
        str(trained),
        "--data",
        "synthetic:64",
        "--max-samples",
        "64",
        "--json",
        "--plot",
        str(plot),
    )
    assert code == 0
    data = json.loads(out)
    assert data["train_images"] == 64 and len(data["layers"]) == 9
    assert all(0 <= layer["test_accuracy"] <= 1 for layer in data["layers"])
    assert set(data["saturation"]) == {layer["name"] for layer in data["layers"]}
    assert plot.stat().st_size > 0


def test_scale_width_from_data_writes_a_file_that_reloads_without_data(trained, capsys, tmp_path):
    out_path = tmp_path / "vgg-w.pt"
    code, out, _ = run(
        capsys, "rewrite", str(trained), "--data", "synthetic:64", "--strategy", "scale-width",
        "-p", "scale-width.batches=1", "-p", "scale-width.untrained=true", "-o", str(out_path), "--no-latency",
    )  # fmt: skip
    assert code == 0
    assert "s_mu measured on 64 training images" in out
    assert "is at chance" in out and "proceeding as asked (untrained=true)" in out  # two batches of training
    factor = load_model_file(out_path).recipe.steps[0].params["factor"]
    reloaded = rewriter.load(str(out_path))
    assert reloaded.features[0].out_channels == scaled(64, factor, 8)


def test_the_quick_training_of_saturation_needs_no_files(capsys):
    code, out, err = run(
        capsys, "saturation", "cifar_vgg11", "--data", "synthetic:64", "--epochs", "1", "--batch-size", "32",
        "--lr", "0.01", "--batches", "1",
    )  # fmt: skip
    assert code == 0
    assert "training for 1 epochs first" in err and "s_mu" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["saturation", "cifar_vgg11", "--data", "cifar10:/no/such"], "no cifar10 batches"),
        (["probe", "cifar_vgg11", "--num-classes", "5", "--data", "synthetic:32"], "outputs 5 classes but"),
        (
            ["train", "cifar_vgg11", "--data", "imagefolder:/no/such", "--input-size", "32", "-o", "x.pt"],
            "is not a folder",
        ),
        # without --input-size the size is read from the folder's images: the missing folder is the fault
        (["train", "cifar_vgg11", "--data", "imagefolder:/no/such", "-o", "x.pt"], "is not a folder"),
    ],
)
def test_data_errors_are_one_line(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["saturation", "cifar_vgg11", "--data", "cifar"], "unknown data source 'cifar'"),
        (
            ["saturation", "cifar_vgg11", "--data", "synthetic:32", "--delta", "1.5"],
            "argument --delta: expected a finite number in (0, 1), got 1.5",
        ),
        (["train", "cifar_vgg11", "--data", "imagefolder:mixed", "-o", "x.pt"], "give --input-size"),
    ],
)
def test_usage_errors_of_data_commands_exit_2(capsys, argv, message, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    for name, size in (("a", (8, 8)), ("b", (9, 7))):  # images of two sizes: no size to infer
        (tmp_path / "mixed" / name).mkdir(parents=True)
        Image.new("RGB", size).save(tmp_path / "mixed" / name / "0.png")
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_callable_without_num_classes_is_built_as_it_is_and_its_head_checked(capsys):
    # FlattenHead takes no num_classes: the data's class count is not forced on it, its 3 outputs are checked
    code, _, err = run(
        capsys, "relevance", "tests.nets:FlattenHead", "--data", "synthetic:32", "--input-size", "16"
    )
    assert code == 1 and "outputs 3 classes but synthetic:32 has 10; build it with a 10-class head" in err
    assert "drop --num-classes" not in err


def test_rewrite_with_data_sizes_a_model_built_by_name_for_the_datas_classes(capsys):
    code, out, _ = run(capsys, "rewrite", "resnet18", "--data", "synthetic:32", "--input-size", "32",
                       "--strategy", "truncate", "--json", "--no-latency")  # fmt: skip
    # torchvision's resnet18 has 11,689,512 parameters with 1000 classes; its 512 -> 10 head has 990 x 513 fewer
    assert code == 0 and json.loads(out)["rows"][0]["params"] == 11_689_512 - 990 * 513
