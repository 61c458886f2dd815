"""One convention per concept across every command (README "Conventions", issue 22 item 8): the parser of
every subcommand is walked, so that a command added later that spells a concept its own way fails here."""

from __future__ import annotations

import argparse
import json

import pytest

from rewriter.cli import SUBCOMMANDS, build_parser
from rewriter.cli._conventions import EXPORT_FORMATS, MODEL_FORMATS, output_format

from ..cli_runner import run

PARSER = build_parser()
COMMANDS: dict[str, argparse.ArgumentParser] = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)
).choices


def options(name: str) -> dict[str, argparse.Action]:
    """Every option string of a command, to the action that takes it."""
    return {flag: action for action in COMMANDS[name]._actions for flag in action.option_strings}


def test_every_subcommand_is_walked():
    assert sorted(COMMANDS) == sorted(SUBCOMMANDS) and len(COMMANDS) == 14


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_latency_is_one_flag_pair_wherever_a_command_times(name):
    flags = options(name)
    timing = {f for f in flags if "latency" in f and not f.startswith("--max-latency")}
    if not timing:
        return
    assert timing == {"--latency", "--no-latency"}, f"{name} spells latency its own way: {sorted(timing)}"
    action = flags["--latency"]
    assert isinstance(action, argparse.BooleanOptionalAction) and action.dest == "latency"
    assert isinstance(action.default, bool)


def test_latency_is_on_where_a_few_models_are_timed_and_off_where_a_search_times_every_candidate():
    timed = {name for name in SUBCOMMANDS if "--latency" in options(name)}
    assert timed == {"rewrite", "compare", "export", "train", "optimize"}
    defaults = {name: options(name)["--latency"].default for name in timed}
    assert defaults == {"rewrite": True, "compare": True, "export": True, "train": True, "optimize": False}


@pytest.mark.parametrize(
    ("argv", "timed"),
    [
        (["compare", "a", "b"], True),
        (["compare", "a", "b", "--no-latency"], False),
        (["rewrite", "m", "--strategy", "truncate", "--no-latency"], False),
        (["optimize", "m", "--input-size", "32"], False),
        (["optimize", "m", "--input-size", "32", "--latency"], True),
        (["optimize", "m", "--input-size", "32", "--no-latency"], False),
    ],
)
def test_the_old_spellings_of_latency_still_parse(argv, timed):
    assert PARSER.parse_args(argv).latency is timed


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_format_is_the_written_files_and_drawn_from_one_set(name):
    flags = options(name)
    if "--format" not in flags:
        return
    action = flags["--format"]
    assert set(action.choices) <= set(MODEL_FORMATS), f"{name} --format {action.choices}"
    assert action.default is None  # the name of -o says it
    assert "-o" in flags and "--output" in flags


def test_the_commands_that_write_a_model_take_every_format_and_export_the_deployment_ones():
    formats = {
        name: tuple(options(name)["--format"].choices) for name in SUBCOMMANDS if "--format" in options(name)
    }
    assert formats == {"rewrite": MODEL_FORMATS, "train": MODEL_FORMATS, "optimize": MODEL_FORMATS,
                       "export": EXPORT_FORMATS}  # fmt: skip


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_json_prints_and_every_written_output_can_be_forced(name):
    flags = options(name)
    if "--json" in flags:
        assert isinstance(flags["--json"], argparse._StoreTrueAction)
    if "--report" in flags:
        assert "--json" in flags and flags["--report"].metavar == "FILE.json"
    writes = {"-o", "--report", "--plot", "--out"} & set(flags)
    if writes:
        assert isinstance(flags.get("--force"), argparse._StoreTrueAction), f"{name} writes {writes}"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_a_command_that_trains_takes_a_device_and_the_same_precisions(name):
    flags = options(name)
    if "--epochs" in flags:
        assert "--device" in flags and "--precision" in flags, name
    if "--precision" in flags:
        assert tuple(flags["--precision"].choices) == ("auto", "fp32", "bf16", "fp16")


@pytest.mark.parametrize(
    ("output", "given", "expected"),
    [
        ("m.pt", None, "pt"),
        ("m.onnx", None, "onnx"),
        ("dir/m.pt2", None, "pt2"),
        ("m.pth", None, "pt"),  # refused afterwards: a model file is named .pt
        (None, None, "pt"),
        ("m.pt", "onnx", "onnx"),  # given wins; the name is checked against it afterwards
    ],
)
def test_the_format_defaults_to_what_the_name_of_o_says(output, given, expected):
    assert output_format(output, given) == expected


def test_a_rewrite_named_pt2_is_written_as_a_torch_export_program(capsys, tmp_path):
    import torch

    target = tmp_path / "m.pt2"
    code, _, err = run(capsys, "rewrite", "tests.nets:Plain", "--input-size", "16", "--strategy", "truncate",
                       "--no-latency", "--trust-pickle", "-o", str(target))  # fmt: skip
    assert code == 0, err
    program = torch.export.load(str(target)).module()
    assert program(torch.randn(2, 3, 16, 16)).shape[0] == 2


def test_export_refuses_a_name_that_says_a_model_file(capsys, tmp_path):
    code, _, err = run(
        capsys, "export", "tests.nets:Plain", "--input-size", "16", "-o", str(tmp_path / "m.pt")
    )
    assert code == 2 and "name the export OUT.pt2 or OUT.onnx" in err


def test_a_training_named_pt2_is_written_as_a_torch_export_program_and_not_timed(capsys, tmp_path):
    import torch

    target = tmp_path / "t.pt2"
    code, out, err = run(capsys, "train", "tests.nets:tiny_cnn", "--data", "synthetic:64", "--epochs", "1",
                         "--max-batches", "2", "--no-latency", "--json", "-o", str(target))  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["export"]["latency"] is None
    assert torch.export.load(str(target)).module()(torch.randn(3, 3, 32, 32)).shape[0] == 3
