"""The CLI names its flags where a library error or warning speaks of a Python parameter (``cli/_flags.py``).

The library says ``leaf_modules``, ``fmt='pt2'``, ``download=True``; the same faults reached from the
command line must read ``--leaf-module``, ``--format pt2``, ``--download`` (the Python texts are checked in
``tests/test_messages.py``).
"""

from __future__ import annotations

import argparse
import warnings

import pytest

from rewriter._errors import EXIT_FAILURE, EXIT_USAGE, RewriterWarning
from rewriter.cli import _warnings_as_lines, build_parser
from rewriter.cli._flags import in_flags
from tests.cli_runner import run


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser()
    made.add_argument("--num-classes", type=int)
    made.add_argument("--trust-pickle", action="store_true")
    made.add_argument("--force", action="store_true")
    made.add_argument("--format", choices=["pt", "pt2", "onnx"])
    made.add_argument("--device")
    made.add_argument("--lr")
    made.add_argument("--allow-large", action="store_true")
    made.add_argument("-o", "--output")
    made.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    return made


@pytest.mark.parametrize(
    ("message", "params", "expected"),
    [
        ("num_classes must be positive, got -3", ["num_classes"], "--num-classes must be positive, got -3"),
        ("pass trust_pickle=True if you trust it", ["trust_pickle"], "pass --trust-pickle if you trust it"),
        ("x.pt exists; pass overwrite=True", ["overwrite"], "x.pt exists; pass --force"),
        ("x.pt2: fmt='pt2' writes a .pt2", ["fmt"], "x.pt2: --format pt2 writes a .pt2"),
        (
            "device='cuda': no CUDA; use device=\"cpu\"",
            ["device"],
            "--device cuda: no CUDA; use --device cpu",
        ),
        ("lr: expected a rate, got 0", ["lr"], "--lr: expected a rate, got 0"),
        ("the loss diverged; lower `lr`", ["lr"], "the loss diverged; lower --lr"),
        (
            "3000 px; lift it with rewriter.analysis.unbounded()",
            ["unbounded"],
            "3000 px; lift it with --allow-large",
        ),
        ("output: a folder", ["output"], "--output: a folder"),
        # a name inside a path or a quoted value is the user's text, not the parameter
        ("/data/num_classes/m.pt: num_classes=3", ["num_classes"], "/data/num_classes/m.pt: --num-classes 3"),
        ("'/runs/lr=0.1/x.pt': lr=0.1.", ["lr"], "'/runs/lr=0.1/x.pt': --lr 0.1."),
        ("`num_classes` 'num_classes' is odd", ["num_classes"], "--num-classes 'num_classes' is odd"),
        # booleans: True is the flag, False the --no- form where there is one, else left as written
        ("latency=True; latency=False", ["latency"], "--latency; --no-latency"),
        ("trust_pickle=False here", ["trust_pickle"], "trust_pickle=False here"),
        # a value the shell would split is quoted
        ("output='my dir/x.pt' is taken", ["output"], "--output 'my dir/x.pt' is taken"),
    ],
)
def test_each_spelling_of_a_parameter_becomes_the_flag(message, params, expected):
    assert in_flags(message, params, parser()) == expected


def test_only_the_named_parameters_and_only_their_own_spellings_are_replaced():
    """A plain word is no parameter: "device" inside a sentence, "lr_range", "num_classes_b", "--lr" already
    spelled as a flag, and a parameter the error does not carry stay as they are."""
    message = "the device 'x' is no device; lr_range and num_classes_b; --lr; num_classes=3"
    assert in_flags(message, ["device", "lr"], parser()) == message
    assert in_flags("weights: missing", ["weights"], parser()) == "weights: missing"  # no such flag here
    assert in_flags("num_classes: bad", ["num_classes"], None) == "num_classes: bad"


def test_a_warning_that_carries_a_parameter_names_the_flag(capsys):
    with _warnings_as_lines(parser()):
        warnings.warn(RewriterWarning("lower the learning rate (`lr`)", param="lr"), stacklevel=1)
        warnings.warn(RewriterWarning("lr stays as it is without param"), stacklevel=1)
    assert capsys.readouterr().err.splitlines() == [
        "warning: lower the learning rate (--lr)",
        "warning: lr stays as it is without param",
    ]


def test_every_declared_destination_exists_in_some_command():
    """``DESTS`` maps a Python parameter to the ``dest`` of a flag: each must be a real one."""
    from rewriter.cli._flags import DESTS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    dests = {action.dest for sub in commands.values() for action in sub._actions if action.option_strings}
    assert set(DESTS.values()) <= dests


# --- the library's faults, reached from the command line ----------------------------------------------------


def test_an_unknown_leaf_module_names_the_flag(capsys):
    code, _, err = run(capsys, "analyze", "tests.nets:tiny_cnn", "--input-size", "16", "--leaf-module", "NoSuchBlock",
                       "--no-flops")  # fmt: skip
    assert code == EXIT_FAILURE
    assert "error: --leaf-module NoSuchBlock: no module of that class in the model" in err


def test_an_untraceable_module_names_the_flag_in_the_remedy(capsys):
    code, _, err = run(capsys, "analyze", "tests.nets:Untraceable", "--input-size", "32", "--no-flops")
    assert code == EXIT_FAILURE and "Remedy: add DataDependent to --leaf-module to treat it as opaque" in err
    assert "leaf_modules" not in err


def test_a_size_over_the_bound_names_allow_large(capsys):
    code, _, err = run(capsys, "analyze", "tests.nets:tiny_cnn", "--input-size", "4000")
    assert code == EXIT_USAGE and "exceeds the bound of 2048 px per side; lift it with --allow-large" in err


def test_search_faults_name_include_and_search(capsys):
    code, _, err = run(capsys, "optimize", "tests.nets:tiny_cnn", "--input-size", "16", "--include", "no-such",
                       "--dry-run")  # fmt: skip
    assert code == EXIT_USAGE and "error: --include 'no-such': no such strategy" in err
    code, _, err = run(capsys, "optimize", "tests.nets:tiny_cnn", "--input-size", "16", "--search",
                       "truncate.no_such=1", "--dry-run")  # fmt: skip
    assert code == EXIT_USAGE and "error: --search truncate.no_such: unknown parameter" in err


def test_an_output_named_like_an_export_names_the_format_flag(capsys, tmp_path):
    code, _, err = run(capsys, "rewrite", "tests.nets:tiny_cnn", "--input-size", "16", "--strategy", "truncate",
                       "--format", "pt", "-o", str(tmp_path / "x.pt2"))  # fmt: skip
    assert code == EXIT_FAILURE and "is named like a pt2 export; pass --format pt2, or name it .pt" in err
    assert not list(tmp_path.iterdir())


def test_missing_cifar_batches_name_the_download_flag(capsys, tmp_path):
    code, _, err = run(capsys, "train", "tests.nets:tiny_cnn", "--data", f"cifar10:{tmp_path}", "--input-size", "32",
                       "--epochs", "1", "-o", str(tmp_path / "t.pt"))  # fmt: skip
    assert code == EXIT_FAILURE and "; pass --download to fetch them" in err and "download=True" not in err


def test_a_bad_ray_address_names_the_address_flag(capsys, tmp_path):
    code, _, err = run(capsys, "study", "--model", "tests.nets:tiny_cnn", "--data", "synthetic:16", "--recipe",
                       "baseline", "--out", str(tmp_path / "s"), "--executor", "ray",
                       "--address", "nowhere")  # fmt: skip
    assert code == EXIT_FAILURE and "error: --address: expected auto or HOST:PORT, got 'nowhere'" in err


def test_model_file_faults_name_trust_pickle_and_weights(capsys, tmp_path):
    import torch

    from rewriter.models.sources import load_model

    torch.save(load_model("cifar_vgg11")[0], tmp_path / "whole.pt")
    code, _, err = run(capsys, "analyze", str(tmp_path / "whole.pt"), "--input-size", "32")
    assert code != 0 and "Pass --trust-pickle only if you trust" in err and "trust_pickle" not in err
    torch.save({"fc.weight": torch.zeros(1000, 512)}, tmp_path / "sd.pth")
    code, _, err = run(capsys, "analyze", str(tmp_path / "sd.pth"), "--input-size", "32")
    assert code != 0 and "the file as --weights" in err


def test_a_bound_reached_through_a_recipe_or_a_model_argument_still_names_allow_large(capsys, tmp_path):
    (tmp_path / "big.yaml").write_text("steps: [truncate]\ninput_size: 4000\n")
    code, _, err = run(
        capsys, "rewrite", "tests.nets:tiny_cnn", "--recipe", str(tmp_path / "big.yaml"), "--dry-run"
    )
    assert code == 4 and "4000x4000 exceeds the bound" in err and "lift it with --allow-large" in err
    code, _, err = run(
        capsys, "analyze", "tests.nets:tiny_cnn", "--model-arg", "in_chans=100", "--input-size", "16"
    )
    assert code == 2 and "--model-arg in_chans: 100 exceeds" in err and "lift it with --allow-large" in err


def test_the_optimizers_notes_and_reason_name_flags_on_the_command_line_and_parameters_in_python(capsys):
    code, out, err = run(capsys, "optimize", "tests.nets:tiny_cnn", "--input-size", "16", "--data", "synthetic:64",
                         "--max-flops", "1", "--dry-run")  # fmt: skip
    assert (
        "note: width not searched: saturation needs a trained baseline (give its --weights, or --width-factor)"
        in err
    )
    assert code == 3 and "at no more than the baseline's flops (--prefer fit lifts it)" in out
    import rewriter
    from rewriter.lab.data import load_data

    result = rewriter.optimize_model("tests.nets:tiny_cnn", input_size=16, data=load_data("synthetic:64", 16),
                                     max_flops=1, dry_run=True)  # fmt: skip
    assert "(give its `weights`, or `width_factors`)" in " ".join(result.notes)
    assert "(prefer='fit' lifts it)" in result.choice.reason and "--" not in result.choice.reason
