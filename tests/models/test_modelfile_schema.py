"""Model files against their schema: every fault one line naming the field, corrupt told from pickled, an
unknown future version refused, bombs refused before they cost memory; and the save guard of the library."""

from __future__ import annotations

import zipfile

import pytest
import torch

import rewriter
from rewriter import ModelFileError, UntrustedPickleError
from rewriter.engine.recipe import Recipe
from rewriter.models import modelfile

TINY = {"width": 4, "input_size": 8}  # relevance_cnn: three 3x3 convs of 4 filters and a Linear(256, 10)


@pytest.fixture
def payload():
    """The payload of a valid model file of a tiny built-in model (no recipe to replay)."""
    model, spec = rewriter.load_model("relevance_cnn", model_args=TINY)
    return model, {
        "format": "rewriter-model", "version": 1, "rewriter": "0.1.0", "torch": "2",
        "base": spec.to_json(), "recipe": Recipe.empty((8, 8)).to_dict(), "input_size": [8, 8],
        "in_channels": 3, "leaf_modules": [], "report": {},
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
    }  # fmt: skip


def write(tmp_path, data, name="m.pt"):
    path = tmp_path / name
    torch.save(data, path)
    return path


def test_a_valid_file_loads_and_computes_what_was_saved(tmp_path, payload):
    model, data = payload
    loaded = rewriter.load(write(tmp_path, data))
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("state_dict"), "exactly one of 'state_dict' (the weights) and 'module'"),
        (lambda d: d.pop("base"), "base: missing"),
        (lambda d: d["base"].update(colour="red"), "base: unknown field 'colour'"),
        (lambda d: d["base"].update(kind="magic"), "base: kind: expected one of torchvision, builtin"),
        (lambda d: d["base"].update(num_classes="ten"), "base: num_classes: expected null or a positive int"),
        (
            lambda d: d["base"].update(history=[{"recipe": 3}]),
            "base: history: [0].recipe: expected a mapping",
        ),
        (lambda d: d["base"].update(history="none"), "base: history: expected a list of rewrites"),
        (lambda d: d.update(input_size="big"), "input_size: expected [height, width], got 'big'"),
        (lambda d: d.update(in_channels=-3), "in_channels: expected a positive number of image channels"),
        (lambda d: d.update(recipe={"steps": 5}), "recipe: expected 'steps' to be a list, got 5"),
        (
            lambda d: d.update(state_dict={"w": "not a tensor"}),
            "state_dict: 1 entries are not name -> tensor",
        ),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.update(version="1"), "version: expected an int from 1 to 1, got '1'"),
    ],
)
def test_every_fault_of_the_schema_is_named_on_one_line(tmp_path, payload, change, message):
    _, data = payload
    change(data)
    with pytest.raises(ModelFileError) as info:
        rewriter.load(write(tmp_path, data))
    text = str(info.value)
    assert "is not a valid model file" in text and message in text and "\n" not in text


def test_two_faults_are_both_named(tmp_path, payload):
    _, data = payload
    data["input_size"] = [0, 8]
    data["base"]["source"] = ""
    with pytest.raises(
        ModelFileError, match=r"base: source: expected a model name.*; input_size: expected a"
    ):
        rewriter.load(write(tmp_path, data))


def test_a_future_format_version_is_refused_with_the_way_out(tmp_path, payload):
    _, data = payload
    data.update(version=2, rewriter="9.0", layout="something new")
    with pytest.raises(ModelFileError, match=r"format version 2, written by a newer rewriter \('9.0'\); this one "
                       r"reads version 1: upgrade rewriter"):  # fmt: skip
        rewriter.load(write(tmp_path, data))


def test_a_truncated_or_empty_file_is_corrupt_never_a_pickle_to_trust(tmp_path, payload):
    _, data = payload
    whole = write(tmp_path, data).read_bytes()
    for cut in (len(whole) // 2, 100, 10):
        (tmp_path / "cut.pt").write_bytes(whole[:cut])
        for load in (rewriter.load, rewriter.load_model):
            with pytest.raises(ModelFileError, match="is corrupt: a truncated or damaged archive") as info:
                load(str(tmp_path / "cut.pt"))
            assert "trust" not in str(info.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    for load in (rewriter.load, rewriter.load_model):
        with pytest.raises(ModelFileError, match=r"is empty \(0 bytes\)"):
            load(str(tmp_path / "empty.pt"))


def test_a_pickled_module_inside_a_model_file_still_needs_trust(tmp_path, payload):
    model, data = payload
    data.pop("state_dict")
    data["module"] = model
    data["base"]["kind"] = "file"
    path = write(tmp_path, data)
    with pytest.raises(UntrustedPickleError, match="holds a pickled model"):
        rewriter.load(path)
    assert isinstance(rewriter.load(path, trust_pickle=True), torch.nn.Module)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", [100_000, 100_000], "100000x100000 exceeds the bound of 2048 px per side"),
        ("in_channels", 10**6, "1000000 exceeds the bound of 64 channels"),
    ],
)
def test_sizes_and_channels_that_would_allocate_gigabytes_are_refused(
    tmp_path, payload, field, value, message
):
    _, data = payload
    data[field] = value
    path = write(tmp_path, data)
    with pytest.raises(ModelFileError, match=message):
        rewriter.load(path)
    with pytest.raises(ModelFileError, match=message):  # as a command's MODEL, read once before any work
        modelfile.read_model_file(path)


def test_a_tensor_that_does_not_fit_the_model_is_refused_before_any_tensor_data_is_read(
    tmp_path, payload, monkeypatch
):
    _, data = payload
    data["state_dict"]["classifier.weight"] = torch.zeros(1 << 22)  # 16 MiB, where the model needs 10 x 256
    path = tmp_path / "bomb.pt"
    plain = write(tmp_path, data, "plain.pt")
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():  # recompressed: the file is small, its tensor is not
            dst.writestr(info.filename, src.read(info.filename))
    assert path.stat().st_size < (1 << 20)
    places = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: places.append(k.get("map_location")) or real_load(*a, **k)
    )
    with pytest.raises(ModelFileError, match=r"shape mismatch \['classifier.weight'\]"):
        rewriter.load(path)
    assert places and set(places) == {"meta"}  # only the structure was read, never the 16 MiB


def test_a_file_that_holds_more_tensor_data_than_its_tensors_need_is_refused(tmp_path, payload):
    _, data = payload
    big = torch.zeros(1 << 20)  # a 4 MiB storage behind a view of the right shape
    data["state_dict"]["classifier.bias"] = big[:10]
    with pytest.raises(ModelFileError, match="bytes of tensor data for tensors that need"):
        rewriter.load(write(tmp_path, data))


def test_a_file_named_like_its_own_built_in_base_loads_without_recursing(tmp_path, payload, monkeypatch):
    model, data = payload
    monkeypatch.chdir(tmp_path)
    torch.save(data, tmp_path / "relevance_cnn")  # a model file built from 'relevance_cnn', named so
    with pytest.warns(
        rewriter.RewriterWarning, match="names both a file in this folder and a built-in model"
    ):
        loaded, spec = rewriter.load_model("relevance_cnn")
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(loaded(x), model(x)) and spec.source == "relevance_cnn"


def test_save_refuses_an_existing_file_unless_overwrite(tmp_path, payload):
    model, _ = payload
    target = tmp_path / "out.pt"
    target.write_text("user data")
    _, spec = rewriter.load_model("relevance_cnn", model_args=TINY)
    kwargs = {"spec": spec, "recipe": Recipe.empty((8, 8)), "input_size": (8, 8)}
    with pytest.raises(ModelFileError, match="exists; pass overwrite=True"):
        rewriter.save(model, target, **kwargs)
    assert target.read_text() == "user data"
    rewriter.save(model, target, overwrite=True, **kwargs)
    assert modelfile.is_model_file(target)
