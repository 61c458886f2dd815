"""Never lose a file, bound every input (issue 14): the output guard on every file a command writes, the
checkpoint, declared ranges of every numeric argument, a file named like a built-in model, and SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

import rewriter
from rewriter.cli import build_parser
from rewriter.engine.recipe import Recipe

from ..cli_runner import run


@pytest.fixture
def model_file(tmp_path):
    """A tiny model file (relevance_cnn, 4 filters, 8 px) and its bytes."""
    model, spec = rewriter.load_model("relevance_cnn", model_args={"width": 4, "input_size": 8})
    path = tmp_path / "in.pt"
    rewriter.save(model, path, spec=spec, recipe=Recipe.empty((8, 8)), input_size=(8, 8))
    return path, path.read_bytes()


@pytest.mark.parametrize(
    "argv",
    [
        ["rewrite", "{in}", "--strategy", "truncate", "--report", "{in}", "--force"],
        ["rewrite", "{in}", "--strategy", "truncate", "-o", "{link}", "--force"],
        ["analyze", "{in}", "--plot", "{in}", "--force"],
        ["saturation", "{in}", "--data", "synthetic:64", "--report", "{link}", "--force"],
        ["probe", "{in}", "--data", "synthetic:64", "--plot", "{in}"],
        ["compare", "{in}", "resnet18", "--report", "{in}", "--force"],
        ["train", "{in}", "--data", "synthetic:32", "-o", "{in}", "--force"],
        ["train", "{in}", "--data", "synthetic:32", "-o", "{tmp}/o.pt", "--checkpoint", "{link}", "--force"],
    ],
)
def test_no_output_may_replace_an_input_even_with_force(capsys, tmp_path, model_file, argv):
    path, original = model_file
    (tmp_path / "link.pt").symlink_to(path)
    argv = [a.format(**{"in": path, "link": tmp_path / "link.pt", "tmp": tmp_path}) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 1 and "is one of the command's inputs" in err and err.count("\n") == 1
    assert path.read_bytes() == original
    assert "reading data" not in err and "measuring" not in err  # refused before any work


@pytest.mark.parametrize("flag", ["--report", "--plot"])
def test_an_existing_report_or_plot_needs_force(capsys, tmp_path, flag):
    target = tmp_path / "mine.txt"
    target.write_text("keep me")
    command = ["saturation", "cifar_vgg11", "--data", "synthetic:32", "--batches", "1", flag, str(target)]
    code, _, err = run(capsys, *command)
    assert code == 1 and "exists; pass --force" in err and target.read_text() == "keep me"
    code, _, err = run(capsys, "analyze", "cifar_vgg11", "--input-size", "32", "--plot", str(target))
    assert code == 1 and "exists; pass --force" in err and target.read_text() == "keep me"


def test_the_default_checkpoint_never_replaces_a_file_of_the_user(capsys, tmp_path):
    out = tmp_path / "o.pt"
    mine = tmp_path / "o.pt.ckpt"
    mine.write_text("my notes, not a checkpoint")
    argv = [
        "train",
        "cifar_vgg11",
        "--data",
        "synthetic:32",
        "--epochs",
        "1",
        "--max-batches",
        "1",
        "-o",
        str(out),
    ]
    code, _, err = run(capsys, *argv)
    assert code == 1 and "o.pt.ckpt exists; pass --force" in err
    assert mine.read_text() == "my notes, not a checkpoint" and not out.exists()
    code, _, err = run(capsys, *argv[:-2], "-o", str(out), "--checkpoint", str(out))
    assert code == 1 and "are the same file" in err


def _numeric_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for inner in _numeric_actions(sub):
                    yield name, inner
        elif action.type in (int, float):
            yield parser.prog, action


def test_every_numeric_argument_declares_its_range_in_its_type():
    bare = [f"{prog} {'/'.join(a.option_strings)}" for prog, a in _numeric_actions(build_parser())]
    assert not bare, f"numeric arguments without a range: {bare}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "cifar_vgg11", "--data", "synthetic", "-o", "x.pt", "--batch-size", "0"],
         "argument --batch-size: expected an integer from 1 to 65536, got 0"),
        (["train", "cifar_vgg11", "--data", "synthetic", "-o", "x.pt", "--lr", "-1"],
         "argument --lr: expected a finite number in (0, 10], got -1"),
        (["train", "cifar_vgg11", "--data", "synthetic", "-o", "x.pt", "--lr", "nan"], "got nan"),
        (["train", "cifar_vgg11", "--data", "synthetic", "-o", "x.pt", "--epochs", "-1"],
         "argument --epochs: expected an integer from 1 to 100000, got -1"),
        (["train", "cifar_vgg11", "--data", "synthetic", "-o", "x.pt", "--max-batches", "0"],
         "argument --max-batches: expected an integer >= 1, got 0"),
        (["saturation", "cifar_vgg11", "--data", "synthetic", "--loader-workers", "-1"],
         "argument --loader-workers: expected an integer from 0 to 1024, got -1"),
        (["saturation", "cifar_vgg11", "--data", "synthetic:100000000"],
         "'synthetic' takes an optional number of training images from 1 to 100000"),
        (["analyze", "resnet18", "--input-size", "100000"], "100000x100000 exceeds the bound of 2048 px per side"),
        (["analyze", "resnet18", "--input-size", "32", "--in-channels", "1000000"],
         "1000000 exceeds the bound of 64 channels; lift it with --allow-large"),
        (["study", "--model", "m", "--recipe", "baseline", "--data", "synthetic", "--out", "s", "--workers", "0"],
         "argument --workers: expected an integer from 1 to 1024, got 0"),
    ],
)  # fmt: skip
def test_a_value_out_of_its_range_is_one_line_and_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("scale-width.divisor=0", "scale-width.divisor: 0 is out of range; expected 1 <= divisor <= 256"),
        ("scale-width.divisor=-8", "scale-width.divisor: -8 is out of range"),
        ("reorganize-stages.alpha=.nan", "reorganize-stages.alpha: expected a finite number, got nan"),
        ("reorganize-stages.theta=.inf", "reorganize-stages.theta: expected a finite number, got inf"),
        ("reorganize-stages.alpha=nan", "reorganize-stages.alpha: expected float, got 'nan'"),
    ],
)
def test_strategy_parameters_out_of_their_declared_range_are_refused_before_any_work(capsys, param, message):
    strategy = param.partition(".")[0]
    code, _, err = run(
        capsys, "rewrite", "cifar_vgg11", "--input-size", "32", "--strategy", strategy, "-p", param
    )
    assert code == 2 and message in err and "measuring" not in err


def test_every_numeric_strategy_parameter_declares_both_ends_of_its_range():
    from rewriter.engine.strategy import parameters

    loose = []
    for name in rewriter.list_strategies():
        for p in parameters(rewriter.get_strategy(name)):
            numeric = {int, float} & {p.annotation, *getattr(p.annotation, "__args__", ())}
            if numeric and (p.low is None or p.high is None):
                loose.append(f"{name}.{p.name}")
    assert not loose


def test_allow_large_lifts_the_bound(capsys):
    code, _, err = run(capsys, "analyze", "tests.nets:build", "--input-size", "2100x8", "--no-flops")
    assert code == 2 and "exceeds the bound" in err
    code, out, err = run(
        capsys, "analyze", "tests.nets:build", "--input-size", "2100x8", "--no-flops", "--allow-large"
    )
    assert code == 0, err
    assert "at 2100x8" in out


def test_loader_workers_are_capped_to_the_cores(capsys, tmp_path):
    from rewriter.cli._parser import cores

    code, _, err = run(
        capsys, "saturation", "cifar_vgg11", "--data", "synthetic:32", "--batches", "1", "--batch-size", "16",
        "--loader-workers", "999",
    )  # fmt: skip
    assert code == 0 and f"--loader-workers 999 capped to the {cores()} cores" in err


def test_a_file_named_like_a_built_in_model_is_taken_with_a_warning(capsys, tmp_path, monkeypatch):
    model, spec = rewriter.load_model("relevance_cnn", model_args={"width": 4, "input_size": 8})
    monkeypatch.chdir(tmp_path)
    rewriter.save(model, "relevance_cnn", spec=spec, recipe=Recipe.empty((8, 8)), input_size=(8, 8))
    code, out, err = run(capsys, "analyze", "relevance_cnn", "--no-flops")
    assert code == 0, err
    assert (
        "warning: 'relevance_cnn' names both a file in this folder and a built-in model; using the file"
        in err
    )
    assert "at 8x8" in out  # the file's own input size: the file was analyzed, once


def test_an_interrupt_during_start_up_prints_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    for delay in (0.3, 1.0, 2.5):
        child = subprocess.Popen(
            [sys.executable, "-m", "rewriter", "analyze", "resnet18", "--input-size", "32"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path, text=True,
        )  # fmt: skip
        time.sleep(delay)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert "Traceback" not in err, f"after {delay} s: {err}"
        assert child.returncode in (130, -signal.SIGINT, 0), err


def test_a_routed_export_is_refused_before_any_training(capsys, tmp_path):
    out = tmp_path / "dyn.onnx"
    code, _, err = run(
        capsys, "rewrite", "relevance_cnn", "--data", "digits:64", "--strategy", "skip-irrelevant-layers",
        "--format", "onnx", "-o", str(out),
    )  # fmt: skip
    assert code == 1 and "the routed model picks per image which units run" in err
    assert "reading data" not in err and not out.exists()
