"""Library errors speak of Python parameters, never of command-line flags (the CLI names the flag).

Two checks: representative faults reached from Python, whose messages must name the parameter as a Python
caller writes it and carry it as ``param``; and a guard on the source: no string that ``rewriter`` outside
``cli/`` raises or warns with may hold one of the command line's flags (read from the CLI's parsers).
"""

from __future__ import annotations

import argparse
import ast
import functools
import pathlib
import re
import socket
import warnings

import pytest
import torch

import rewriter
from rewriter import _files
from rewriter._errors import RewriterError, RewriterWarning, params_of
from rewriter.analysis import parse_size
from rewriter.engine import check_exportable, check_format
from rewriter.lab.data import DataError, load_data
from rewriter.lab.study.errors import StudyError
from rewriter.lab.study.executors import Executor, check_feasible, check_reachable
from rewriter.lab.train_records import TrainConfig, TrainError
from rewriter.lab.training import resolve_device
from rewriter.optimize.errors import SearchValueError
from rewriter.optimize.space import search_space
from tests import nets

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")

#: files outside this change's scope whose raised messages still name flags, and the flags they name; the
#: lead converts them (with ``param``) and empties this table
NOT_YET_CONVERTED: dict[str, set[str]] = {}


def no_flag(err: BaseException) -> str:
    """The message of ``err``, after checking that it names no flag of the command line."""
    text = str(err)
    assert not set(FLAG.findall(text)) & cli_flags(), text
    return text


# --- faults reached from Python -----------------------------------------------------------------------------


def test_a_bad_class_count_is_a_value_error_that_names_the_parameter():
    with pytest.raises(ValueError) as info:
        rewriter.load_model("cifar_resnet18", num_classes=-3)
    assert not isinstance(info.value, LookupError)  # not "model not found"
    assert no_flag(info.value).startswith("num_classes: expected a positive number of classes; got -3")
    assert info.value.params == ("num_classes",)


def test_a_size_over_the_bound_says_how_to_lift_it_in_python():
    with pytest.raises(rewriter.InputSizeError) as info:
        parse_size(4000, "input_size")
    assert "lift it with rewriter.analysis.unbounded()" in no_flag(info.value)
    assert info.value.params == ("input_size", "unbounded")


def test_an_unknown_or_untraceable_leaf_module_names_leaf_modules():
    with pytest.raises(rewriter.AnalysisError) as info:
        rewriter.analyze(nets.tiny_cnn(), 16, leaf_modules=["NoSuchBlock"], flops=False)
    assert no_flag(info.value).startswith("leaf_modules NoSuchBlock: no module of that class")
    with pytest.raises(rewriter.TraceError) as info:
        rewriter.analyze(nets.Untraceable(), 32, flops=False)
    assert "Remedy: add DataDependent to leaf_modules" in no_flag(info.value)
    assert info.value.params == ("leaf_modules",)


def test_formats_and_existing_outputs_speak_of_fmt_and_overwrite(tmp_path):
    with pytest.raises(rewriter.ModelFileError) as info:
        check_format(tmp_path / "x.pt", "onnx")
    assert "fmt='onnx' writes a file whose name must end in .onnx" in no_flag(info.value)
    with pytest.raises(rewriter.ModelFileError) as info:
        check_format(tmp_path / "x.pt2", "pt")
    assert "pass fmt='pt2', or name it .pt" in no_flag(info.value)
    with pytest.raises(rewriter.ModelFileError) as info:
        check_exportable("pt2", reasons=["it routes on data"])
    assert no_flag(info.value) == "fmt='pt2': it routes on data"
    (tmp_path / "taken.pt").write_bytes(b"x")
    with pytest.raises(rewriter.ModelFileError) as info:
        _files.check_target(tmp_path / "taken.pt")
    assert no_flag(info.value).endswith("exists; pass overwrite=True to overwrite it")
    assert info.value.params == ("overwrite",)


def test_training_settings_name_their_fields():
    with pytest.raises(TrainError) as info:
        TrainConfig(weight_decay=-1.0)
    assert no_flag(info.value) == "weight_decay must be 0 or more, got -1"
    assert info.value.params == ("weight_decay",)
    with pytest.raises(TrainError) as info:
        resolve_device("gpu7")
    assert no_flag(info.value).startswith("device='gpu7' is not a device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_missing_cuda_device_is_refused_in_python_terms():
    with pytest.raises(TrainError) as info:
        resolve_device("cuda")
    assert no_flag(info.value) == "device='cuda': torch sees no CUDA on this machine; use device='cpu'"


def test_data_and_executors_name_their_parameters(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(f"cifar10:{tmp_path}", 32)
    assert no_flag(info.value).endswith("; pass download=True to fetch them")
    with pytest.raises(StudyError) as info:
        Executor("ray", cpus_per_cell=0)
    assert no_flag(info.value) == "cpus_per_cell must be above 0, got 0"
    with pytest.raises(StudyError) as info:
        check_reachable("nowhere", 1.0)
    assert no_flag(info.value) == "address: expected auto or HOST:PORT, got 'nowhere'"
    with pytest.raises(StudyError) as info:
        check_feasible(Executor("ray", cpus_per_cell=4, gpus_per_cell=1), [{"CPU": 2.0}])
    assert no_flag(info.value).endswith("lower cpus_per_cell or gpus_per_cell")
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StudyError) as info:
        check_reachable(f"127.0.0.1:{port}", 1.0)
    assert "connect_timeout sets the wait" in no_flag(info.value)


def test_the_search_names_include_and_search():
    with pytest.raises(SearchValueError) as info:
        search_space(include=["no-such-strategy"])
    assert no_flag(info.value).startswith("include 'no-such-strategy': no such strategy")
    assert info.value.params == ("include",)  # kept through the re-raise as a SearchValueError
    with pytest.raises(SearchValueError) as info:
        search_space(values={"truncate": {"no_such_param": [1]}})
    assert no_flag(info.value).startswith("search truncate.no_such_param: unknown parameter")


def test_the_parameter_survives_pickling_as_across_a_process_pool():
    import pickle

    err = pickle.loads(pickle.dumps(TrainError("lr must be above 0, got -1", param="lr")))
    assert (type(err), str(err), err.params) == (TrainError, "lr must be above 0, got -1", ("lr",))
    warning = pickle.loads(pickle.dumps(RewriterWarning("w", param=("a", "b"))))
    assert warning.params == ("a", "b") and params_of(ValueError("x")) == ()


# --- the guard on the source --------------------------------------------------------------------------------


@functools.cache
def cli_flags() -> frozenset[str]:
    """Every option string of every command of the CLI."""
    from rewriter.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return frozenset(
        s for sub in commands.values() for a in sub._actions for s in a.option_strings if s[1] == "-"
    )


def message_strings(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of the string parts of what the module raises or warns with: the arguments of a raised
    call, of ``warn(...)`` and of ``RewriterWarning(...)``, following a name to what the enclosing function or
    the module assigns to it, and a call to a function of the same module into that function's strings."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: list[tuple[int, str]] = []

    def assigned(scope: ast.AST) -> dict[str, list[ast.AST]]:
        names: dict[str, list[ast.AST]] = {}
        for node in ast.walk(scope) if scope is not tree else tree.body:
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, []).append(node.value)
        return names

    def strings(node: ast.AST, names: dict[str, list[ast.AST]], seen: frozenset[str] = frozenset()) -> None:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                found.append((inner.lineno, inner.value))
            elif isinstance(inner, ast.Name) and inner.id in names and inner.id not in seen:
                for value in names[inner.id]:
                    strings(value, names, seen | {inner.id})
            elif (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id in functions
                  and inner.func.id not in seen):  # fmt: skip
                function = functions[inner.func.id]
                body = function.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # not the docstring
                for statement in body:
                    strings(statement, {**module, **assigned(function)}, seen | {inner.func.id})

    def messages(scope: ast.AST, names: dict[str, list[ast.AST]]) -> None:
        for node in ast.walk(scope):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node is not scope:
                continue  # walked as a scope of its own
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                for arg in [*node.exc.args, *(k.value for k in node.exc.keywords)]:
                    strings(arg, names)
            elif isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in ("warn", "RewriterWarning"):
                    for arg in node.args:
                        strings(arg, names)

    module = assigned(tree)
    for scope in ast.walk(tree):
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            messages(scope, {**module, **assigned(scope)})
    messages(tree, module)
    return found


def flags_in_messages() -> dict[str, dict[str, list[int]]]:
    """For each library file (not ``cli/``): the CLI flags its raised and warned messages name, with lines."""
    known = cli_flags()
    result: dict[str, dict[str, list[int]]] = {}
    for path in sorted((ROOT / "rewriter").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("rewriter/cli/"):
            continue
        for line, text in message_strings(ast.parse(path.read_text())):
            for flag in FLAG.findall(text):
                if flag in known:
                    lines = result.setdefault(relative, {}).setdefault(flag, [])
                    lines += [] if line in lines else [line]
    return result


def test_the_guard_finds_a_flag_in_a_raised_message():
    """The scan itself: a flag in a raise, in a warning, behind a constant or a message function is found;
    another program's flag (``ray start --head``) and a docstring are not."""
    source = '''
HINT = "pass --force"
def helper():
    """Docstring --quiet."""
    return "use --device cpu"
def f():
    raise ValueError(f"x; {HINT}")
def g():
    raise ValueError(helper())
def h():
    warnings.warn(RewriterWarning("lower --lr"), stacklevel=2)
def k():
    raise ValueError("is the cluster up (`ray start --head`)?")
'''
    texts = " ".join(text for _, text in message_strings(ast.parse(source)))
    assert {f for f in FLAG.findall(texts) if f in cli_flags()} == {"--force", "--device", "--lr"}


def test_library_messages_name_no_command_line_flag():
    found = flags_in_messages()
    unexpected = {
        path: {flag: lines for flag, lines in flags.items() if flag not in NOT_YET_CONVERTED.get(path, set())}
        for path, flags in found.items()
    }
    unexpected = {path: flags for path, flags in unexpected.items() if flags}
    assert not unexpected, (
        f"say the Python parameter and pass param=...; the CLI names the flag: {unexpected}"
    )
    stale = {path: flags - set(found.get(path, {})) for path, flags in NOT_YET_CONVERTED.items()}
    assert not any(stale.values()), f"converted: remove them from NOT_YET_CONVERTED: {stale}"


def test_a_warning_with_a_parameter_keeps_it():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(RewriterWarning("lr is high", param="lr"), stacklevel=1)
    assert caught[0].category is RewriterWarning and caught[0].message.params == ("lr",)
    assert isinstance(RewriterError("x", param="lr"), Exception)
