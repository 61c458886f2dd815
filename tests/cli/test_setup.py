"""One setup path: a model file given as MODEL is read once per command (its structure once, its tensor data
once), counted two ways (the interpreter's own audit of every file opened, and every ``torch.load``); an
image folder is listed once; the model a request names is built from that one reading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import rewriter
from rewriter import ModelNotFoundError
from rewriter.cli._setup import load_setup
from rewriter.engine.recipe import Recipe
from rewriter.lab import imagefolder
from rewriter.lab.model_request import ModelRequest
from rewriter.models import modelfile

ROOT = Path(__file__).resolve().parents[2]
TINY = {"width": 4, "input_size": 8}

#: runs each command line in one interpreter and counts, per command, the times MODEL's file is opened (an
#: audit hook: every ``open`` Python makes, zip readers and torch's included) and read by ``torch.load``
COUNTER = textwrap.dedent(
    """
    import contextlib, io, json, os, sys
    target = os.path.realpath(sys.argv[1])
    counts = {"opens": 0, "loads": []}

    def audit(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            if os.path.realpath(os.fsdecode(args[0])) == target:
                counts["opens"] += 1

    sys.addaudithook(audit)
    import torch
    real_load = torch.load

    def load(f, *args, **kwargs):
        name = getattr(f, "name", f)
        if os.path.realpath(os.fsdecode(name)) == target:
            counts["loads"].append([str(kwargs.get("map_location")), kwargs.get("weights_only")])
        return real_load(f, *args, **kwargs)

    torch.load = load
    from rewriter.cli import main

    found = []
    for argv in json.loads(sys.argv[2]):
        counts = {"opens": 0, "loads": []}
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        found.append({"code": code, **counts})
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny relevance CNN (10 classes, 8x8) written as a model file that records its input size."""
    path = tmp_path_factory.mktemp("setup") / "tiny.pt"
    model, spec = rewriter.load_model("relevance_cnn", model_args=TINY)
    rewriter.save(model, path, spec=spec, recipe=Recipe.empty((8, 8)), input_size=(8, 8))
    return path


def test_a_model_file_is_opened_once_for_its_structure_and_once_for_its_tensors(model_file):
    commands = [
        ["analyze", str(model_file), "--no-flops"],
        ["rewrite", str(model_file), "--strategy", "truncate", "--no-latency"],
        ["evaluate", str(model_file), "--data", "synthetic:16", "--test-samples", "10"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", COUNTER, str(model_file), json.dumps(commands)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for argv, found in zip(commands, json.loads(done.stdout.splitlines()[-1]), strict=True):
        # the payload (names, shapes, recipe) once with weights_only on the meta device, then the tensor data
        assert found["loads"] == [["meta", True], ["cpu", True]], (argv, found)
        assert found["opens"] == 2, (argv, found)  # one opening for each reading: no sniffing around them
        assert found["code"] == 0, argv


def test_the_input_size_a_file_records_is_read_from_the_one_reading(model_file, monkeypatch):
    request = ModelRequest(str(model_file)).read()
    monkeypatch.setattr(modelfile.filetypes, "read_structure", _refuse)  # no second look at the payload
    setup = load_setup(request, "synthetic:16", test_samples=10)
    assert setup.input_size == (8, 8) and request.recorded_input_size == (8, 8)
    assert setup.spec.history[-1]["input_size"] == [8, 8]


def test_a_pickled_module_read_once_builds_models_that_share_no_parameter(tmp_path, monkeypatch):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(3, 2), path)
    request = ModelRequest(str(path), trust_pickle=True).read()
    monkeypatch.setattr(torch, "load", _refuse)  # both models come from the reading above
    first, spec = request.load()
    second, _ = request.load()
    assert spec.kind == "file" and isinstance(first, torch.nn.Linear)
    with torch.no_grad():
        first.weight.fill_(1.0)
    assert not torch.equal(second.weight, first.weight)


def test_a_folder_given_as_the_model_says_so(tmp_path):
    (tmp_path / "nets").mkdir()
    with pytest.raises(ModelNotFoundError, match="nets/ is a folder, not a model file"):
        rewriter.load_model(str(tmp_path / "nets") + "/")


def test_an_image_folder_is_listed_once_for_its_size_and_its_images(tmp_path, monkeypatch):
    for split, count in (("train", 6), ("test", 2)):
        for k, name in enumerate(("a", "b")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.full((8, 8, 3), 80 * k, dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path.parent / "cache"))
    listed, sized = [], []
    scan, size = imagefolder.scan_folder, imagefolder.native_folder_size
    monkeypatch.setattr(imagefolder, "scan_folder", lambda root: listed.append(root.name) or scan(root))
    monkeypatch.setattr(imagefolder, "native_folder_size", lambda folders: sized.append(1) or size(folders))
    setup = load_setup(ModelRequest("relevance_cnn", model_args=TINY), f"imagefolder:{tmp_path}")
    assert setup.input_size == (8, 8) and setup.data.num_classes == 2
    assert sorted(listed) == ["test", "train"] and len(sized) == 1  # each split listed once, sized once


def _refuse(*args, **kwargs):
    raise AssertionError("read again")
