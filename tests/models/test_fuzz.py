"""Property-based: any mutation of a valid model file or recipe gives a loaded model or a one-line
``RewriterError``, never another exception, and never more memory than a bound (issue 14).

The memory bound is enforced, not sampled: while an example runs, the process may not grow its data
segment by more than ``HEADROOM`` (``RLIMIT_DATA``), so a file that makes the loader allocate gigabytes
fails with ``MemoryError`` (not a ``RewriterError``) and the property fails. Examples are derandomized, so
CI runs the same ones every time.
"""

from __future__ import annotations

import contextlib
import copy
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewriter
from rewriter import RewriterError
from rewriter.engine.recipe import Recipe

HEADROOM = 1536 << 20  # bytes a single example may allocate
SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
TINY = {"width": 4, "input_size": 8}
RECIPE = (
    "input_size: 32\nnum_classes: 10\nsteps:\n  - remove-stem-downsampling: {mode: strides}\n"
    "  - truncate: {rule: output}\n"
)


def _valid_payload() -> dict:
    model, spec = rewriter.load_model("relevance_cnn", model_args=TINY)
    return {
        "format": "rewriter-model", "version": 1, "rewriter": "0.1.0", "torch": "2", "base": spec.to_json(),
        "recipe": Recipe.empty((8, 8)).to_dict(), "input_size": [8, 8], "in_channels": 3, "leaf_modules": [],
        "report": {}, "state_dict": model.state_dict(),
    }  # fmt: skip


VALID = _valid_payload()


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in the payload a mutation can hit (into mappings and lists, not into tensors)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            found += _paths(inner, (*prefix, i))
    return found


PATHS = _paths(VALID)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.sampled_from([0, 1, 2, 3, 8, 10, 100_000, 10**6, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["truncate", "scale-width", "os:system", "tests.nets:build", "resnet18", "builtin", "file"]
    ),
    st.lists(st.integers(min_value=-3, max_value=100_000), max_size=3),
    st.lists(
        st.sampled_from([{"truncate": {}}, "truncate", {"scale-width": {"factor": 0.5}}, 7]), max_size=2
    ),
    st.dictionaries(st.sampled_from(["steps", "recipe", "input_size", "x"]), st.integers(0, 9), max_size=2),
    st.builds(lambda shape: torch.zeros(shape), st.lists(st.integers(0, 64), min_size=0, max_size=3)),
)


@contextlib.contextmanager
def bounded_memory() -> Iterator[None]:
    """Limit the growth of the data segment (heap and anonymous mmaps) while the block runs."""
    used = next(int(line.split()[1]) << 10 for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmData:"))  # fmt: skip
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = used + HEADROOM if hard == resource.RLIM_INFINITY else min(used + HEADROOM, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _mutate(data: dict, path: tuple, value, delete: bool) -> dict:
    data = copy.deepcopy(data)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return data


def _loads_or_refuses_in_one_line(path: Path) -> None:
    for load in (lambda: rewriter.load(path), lambda: rewriter.load_model(str(path))):
        try:
            with bounded_memory():
                result = load()
        except RewriterError as err:
            assert "\n" not in str(err), str(err)
        else:
            assert isinstance(result[0] if isinstance(result, tuple) else result, torch.nn.Module)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@SETTINGS
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), min_size=1, max_size=3))
def test_any_mutation_of_a_model_files_fields_loads_or_is_refused_in_one_line(folder, mutations):
    data = VALID
    for path, value, delete in mutations:
        try:
            data = _mutate(data, path, value, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the place
    target = folder / "fields.pt"
    torch.save(data, target)
    _loads_or_refuses_in_one_line(target)


@SETTINGS
@given(data=st.data())
def test_any_damage_to_a_model_files_bytes_loads_or_is_refused_in_one_line(folder, data):
    target = folder / "bytes.pt"
    torch.save(VALID, target)
    raw = bytearray(target.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "truncate":
        raw = raw[:at]
    elif kind == "flip":
        for offset in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[offset] ^= data.draw(st.integers(1, 255))
    else:
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    target.write_bytes(bytes(raw))
    _loads_or_refuses_in_one_line(target)


RECIPE_VALUES = st.one_of(
    st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.lists(st.integers(0, 100), max_size=3), st.sampled_from(["truncate", {"truncate": {"rule": "sideways"}},
    {"scale-width": {"divisor": 0}}, {"reorganize-stages": {"alpha": float("nan")}}, [], {}]),
)  # fmt: skip


@SETTINGS
@given(data=st.data())
def test_any_mutation_of_a_recipe_parses_or_is_refused_in_one_line(folder, data):
    target = folder / "recipe.yaml"
    if data.draw(st.booleans()):  # damage the text
        text = RECIPE
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + data.draw(st.text(max_size=4)) + text[at + data.draw(st.integers(0, 3)) :]
    else:  # change the structure
        content = yaml.safe_load(RECIPE)
        paths = _paths(content)
        for path, value, delete in data.draw(st.lists(st.tuples(st.sampled_from(paths), RECIPE_VALUES,
                                                                st.booleans()), min_size=1, max_size=3)):  # fmt: skip
            with contextlib.suppress(KeyError, IndexError, TypeError):
                content = _mutate(content, path, value, delete)
        text = yaml.safe_dump(content)
    target.write_text(text)
    try:
        recipe = Recipe.from_yaml(target)
        recipe.strategies()
    except RewriterError as err:
        assert "\n" not in str(err), str(err)
