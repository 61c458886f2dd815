"""The command line: output formats, exit codes, and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import matplotlib.image
import pytest
import torch

from rewriter.cli import main

from ..cli_runner import run


def test_analyze_prints_the_table_and_the_summary(capsys):
    code, out, _ = run(capsys, "analyze", "resnet18", "--input-size", "32", "--num-classes", "10")
    assert code == 0
    assert "layer4.1.conv2" in out and "<- b_min" in out
    assert "border layer b_min: layer4.1.conv2" in out
    assert "one fused multiply-add counts as one flop" in out
    assert "smallest input at which every layer is productive: 75 px" in out
    assert "FLOPs 37.12 M" in out  # fvcore on resnet18 with 10 classes at 32 px: 37,118,464


def test_analyze_json_follows_the_design_contract(capsys):
    code, out, _ = run(capsys, "analyze", "resnet18", "--input-size", "32", "--num-classes", "10", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "resnet18"
    assert data["input_size"] == [32, 32]
    assert data["flops"] == 37118464  # design.md's example figure for resnet18 at 32 px, 10 classes
    assert data["params"] == 11181642
    assert data["border_rule"] == "input"
    assert data["border_layer_min"] == "layer4.1.conv2"
    assert data["border_layer_max"] == "layer1.1.conv2"
    conv1 = data["layers"][0]
    assert conv1 == {
        **conv1,
        "name": "conv1",
        "type": "Conv2d",
        "kernel_size": [7, 7],
        "stride": [2, 2],
        "dilation": [1, 1],
        "r_in_min": [1, 1],
        "r_in_max": [1, 1],
        "r_out_min": [7, 7],
        "r_out_max": [7, 7],
        "output_size": [16, 16],
        "productive": True,
    }
    fc = data["layers"][-1]
    assert fc["name"] == "fc" and fc["r_out_min"] is None and fc["productive"] is None


def test_analyze_json_is_deterministic(capsys):
    first = run(capsys, "analyze", "cifar_vgg11", "--input-size", "32", "--json")[1]
    second = run(capsys, "analyze", "cifar_vgg11", "--input-size", "32", "--json")[1]
    assert first == second


def test_analyze_writes_a_plot(capsys, tmp_path):
    path = tmp_path / "rf.png"
    code, _, err = run(capsys, "analyze", "resnet18", "--input-size", "32", "--no-flops", "--plot", str(path))
    assert code == 0 and f"wrote {path}" in err
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 500
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_analyze_an_import_spec_with_model_args_and_a_non_square_size(capsys, tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "import torch.nn as nn\n"
        "def build(width=8):\n"
        "    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(width, width, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code, out, _ = run(
        capsys,
        "analyze",
        "mypkg.nets:build",
        "--model-arg",
        "width=32",
        "--input-size",
        "64,48",
        "--json",
        "--plot",
        "rf.png",
    )
    sys.modules.pop("mypkg.nets", None)
    sys.modules.pop("mypkg", None)
    assert code == 0
    data = json.loads(out)
    assert data["input_size"] == [64, 48]
    assert data["layers"][1]["output_size"] == [32, 24]
    assert data["params"] == 3 * 32 * 9 + 32 + 32 * 32 * 9 + 32
    assert (tmp_path / "rf.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["analyze", "resnet19", "--input-size", "32"],
            "error: unknown model 'resnet19'; did you mean 'resnet18'",
        ),
        (
            ["analyze", "alexnet", "--input-size", "32"],
            "error: the model does not run at 32x32: layer 'features.12' (MaxPool2d) failed on an input of shape "
            "[1, 256, 1, 1]",
        ),
        (["analyze", "cifar_vgg16", "--input-size", "64"], "it runs at 32x32"),
        (
            ["analyze", "resnet18", "--input-size", "32", "--leaf-module", "Nope"],
            "--leaf-module Nope: no module",
        ),
    ],
)
def test_bad_input_gets_one_line_and_exit_code_1(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "resnet18", "--input-size", "3a"], "error: argument --input-size: expected a positive size"),
        (["analyze", "resnet18", "--input-size", "0"], "error: argument --input-size: expected a positive size"),
        (["rewrite", "resnet18", "--input-size", "32"], "give either --strategy NAME (repeatable) or --recipe"),
        (["rewrite", "resnet18", "--input-size", "32", "--strategy", "truncate", "-p", "truncate"],
         "--param expects STRATEGY.KEY=VALUE, got 'truncate'"),
        (["analyze", "resnet18"], "give --input-size"),
    ],
)  # fmt: skip
def test_usage_errors_get_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_alexnet_at_32_px_names_the_smallest_size_it_runs_at(capsys):
    # alexnet's features end with a 3x3/2 max-pool; at 63 px its input is 3x3 (63 -> 15 -> 7 -> 3), at 62 px 1x1.
    _, _, err = run(capsys, "analyze", "alexnet", "--input-size", "32", "--no-flops")
    assert "the smallest square input it runs at is 63x63" in err


def test_mismatched_weights_exit_4_and_name_the_keys(capsys, tmp_path):
    from rewriter.models.sources import load_model

    model, _ = load_model("resnet18")
    torch.save(model.state_dict(), tmp_path / "w.pth")
    code, _, err = run(
        capsys,
        "analyze",
        "resnet18",
        "--num-classes",
        "10",
        "--weights",
        str(tmp_path / "w.pth"),
        "--input-size",
        "32",
    )
    assert code == 4  # an invalid input file
    assert "fc.weight: file [1000, 512] vs model [10, 512]" in err


def test_debug_shows_the_traceback(capsys):
    from rewriter import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        main(["analyze", "resnet19", "--input-size", "32", "--debug"])


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", "resnet18", "--border-rule", "sideways"])  # not one of the choices
    assert info.value.code == 2
    assert "--border-rule" in capsys.readouterr().err


def test_help_lists_the_commands_and_teaches_by_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "analyze" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--border-rule" in text and "--leaf-module" in text


def test_models_lists_builtin_and_torchvision_names(capsys):
    code, out, _ = run(capsys, "models", "--json")
    data = json.loads(out)
    assert code == 0
    assert "mpnet18" in data["builtin"] and "resnet18" in data["torchvision"]
    assert len(data["torchvision"]) == 80


@pytest.mark.skipif(shutil.which("rewriter") is None, reason="console script not installed")
def test_the_console_script_is_installed():
    result = subprocess.run(["rewriter", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("rewriter ")


def test_rewrite_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path):
    code, out, _ = run(
        capsys,
        "rewrite",
        "cifar_vgg16",
        "--input-size",
        "32",
        "--strategy",
        "truncate",
        "--dry-run",
        "-o",
        str(tmp_path / "x.pt"),
    )
    assert code == 0
    assert "keep     features: every layer up to and including 'features.22'" in out
    assert "remove   features.23: MaxPool2d  (unproductive: r_in_min 40 > 32)" in out
    assert "attach   head: AdaptiveAvgPool2d(1) + Flatten + Linear(256, 10)" in out
    assert "dry run" in out and list(tmp_path.iterdir()) == []


def test_rewrite_with_a_recipe_writes_the_model_and_the_report(capsys, tmp_path):
    recipe = tmp_path / "trim.yaml"
    recipe.write_text(
        "num_classes: 10\nsteps:\n  - remove-stem-downsampling: {}\n  - truncate: {rule: input}\n"
    )
    out, report = tmp_path / "out.pt", tmp_path / "out.json"
    code, text, err = run(
        capsys,
        "rewrite",
        "resnet18",
        "--input-size",
        "32",
        "--recipe",
        str(recipe),
        "-p",
        "truncate.rule=output",
        "-o",
        str(out),
        "--report",
        str(report),
        "--no-latency",
    )
    assert code == 0, err
    data = json.loads(report.read_text())
    assert [row["label"] for row in data["rows"]] == [
        "baseline",
        "1. remove-stem-downsampling",
        "2. truncate",
    ]
    assert data["recipe"]["steps"][1]["truncate"]["rule"] == "output"  # the command line won over the file
    assert data["rows"][1]["delta"]["flops_percent"] > 1000
    assert "2. truncate" in text and f"wrote {out}" in err
    code, text, _ = run(
        capsys,
        "compare",
        "resnet18",
        str(out),
        "--input-size",
        "32",
        "--num-classes",
        "10",
        "--no-latency",
        "--json",
    )
    rows = json.loads(text)["rows"]
    assert code == 0 and rows[1]["params"] == data["rows"][2]["params"]


def test_rewrite_refuses_to_overwrite_before_doing_any_work(capsys, tmp_path):
    target = tmp_path / "out.pt"
    target.write_text("keep me")
    code, _, err = run(
        capsys, "rewrite", "resnet18", "--input-size", "32", "--strategy", "truncate", "-o", str(target)
    )
    assert code == 1 and "exists; pass --force" in err and target.read_text() == "keep me"


def test_rewrite_needs_strategies_or_a_recipe(capsys):
    code, _, err = run(capsys, "rewrite", "resnet18", "--input-size", "32")
    assert code == 2 and "give either --strategy NAME (repeatable) or --recipe FILE.yaml" in err


def test_rewrite_an_unknown_strategy_lists_close_matches(capsys):
    code, _, err = run(capsys, "rewrite", "resnet18", "--input-size", "32", "--strategy", "trunacte")
    assert code == 2 and "unknown strategy 'trunacte'; did you mean 'truncate'?" in err


def test_strategies_lists_names_docs_and_parameters(capsys):
    code, out, _ = run(capsys, "strategies", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["truncate"]["summary"].startswith("Cut the border layer")
    rule = next(p for p in data["truncate"]["parameters"] if p["name"] == "rule")
    assert rule == {"name": "rule", "type": "'input' | 'output'", "default": "input", "help": rule["help"],
                    "search": None}  # fmt: skip
    keep = next(p for p in data["truncate"]["parameters"] if p["name"] == "keep_blocks")
    assert keep["search"] == [0, 1]  # what `rewriter optimize` tries


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--report", "{tmp}"], "is a folder"),
        (["-o", "{tmp}/missing/out.pt"], "does not exist"),
        (
            ["-p", "truncat.rule=output"],
            "a parameter is set for 'truncat', which no step of --strategy uses; did you mean 'truncate'?",
        ),
        (["--num-classes", "-1"], "argument --num-classes: expected an integer from 1 to 100000, got -1"),
    ],
)
def test_rewrite_refuses_bad_arguments_before_any_work(capsys, tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, "rewrite", "resnet18", "--input-size", "32", "--strategy", "truncate", *argv)
    usage = "argument" in message or "-p" in argv
    assert code == (2 if usage else 1) and message in err and "Traceback" not in err
    assert "measuring" not in err


def test_a_factory_error_is_one_line(capsys):
    code, _, err = run(capsys, "analyze", "mobilenet_v2", "--model-arg", "dropout=2", "--input-size", "32")
    assert code == 1 and err.startswith("error: cannot build torchvision model 'mobilenet_v2'")
