"""Model files: reload without unpickling, refuse to overwrite, accept them wherever MODEL goes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import rewriter
from rewriter.engine.recipe import Recipe
from rewriter.models import modelfile


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """resnet18 (10 classes) with its stem downsampling removed and truncated, written to a file."""
    path = tmp_path_factory.mktemp("files") / "r18.pt"
    model, spec = rewriter.load_model("resnet18", num_classes=10)
    recipe = Recipe.from_dict({"steps": ["remove-stem-downsampling", {"truncate": {"rule": "output"}}]})
    result = rewriter.rewrite(model, recipe, input_size=32, latency=False)
    rewriter.save(
        result.model,
        path,
        spec=spec,
        recipe=result.recipe,
        input_size=(32, 32),
        report=result.report.to_json(),
    )
    return path, result


def test_the_file_is_plain_data_that_loads_with_weights_only(written):
    path, result = written
    data = torch.load(path, weights_only=True)
    assert data["format"] == "rewriter-model"
    assert data["base"]["source"] == "resnet18" and data["base"]["num_classes"] == 10
    assert set(data["state_dict"]) == set(result.model.state_dict())


def test_loading_replays_the_recipe_and_restores_the_weights(written):
    path, result = written
    loaded = rewriter.load(path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), result.model.eval()(x))
    assert type(loaded).__name__ == "Truncated"


def test_an_existing_file_is_not_overwritten_without_force(written, tmp_path):
    _path, result = written
    target = tmp_path / "copy.pt"
    target.write_bytes(b"user data")
    kwargs = {
        "spec": rewriter.ModelSpec("resnet18", "torchvision", 10),
        "recipe": result.recipe,
        "input_size": (32, 32),
    }
    with pytest.raises(rewriter.ModelFileError, match="exists; pass overwrite=True"):
        rewriter.save(result.model, target, **kwargs)
    assert target.read_bytes() == b"user data"
    rewriter.save(result.model, target, force=True, **kwargs)
    assert modelfile.is_model_file(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.pt"]  # no temporary file left


def test_a_model_file_is_a_model_for_analyze_and_rewrite(written):
    path, _ = written
    model, spec = rewriter.load_model(str(path))
    analysis = rewriter.analyze(model, 32, flops=False)
    assert analysis.layer_names()[0] == "features.conv1"
    assert spec.source == "resnet18" and len(spec.history) == 1
    # the first truncation already removed every unproductive layer: a second one has nothing to cut
    again = rewriter.rewrite(
        model, {"steps": [{"truncate": {"rule": "output"}}]}, input_size=32, latency=False
    )
    assert again.plans[0].is_noop


def test_a_rewritten_model_file_rewritten_again_reloads(written, tmp_path):
    path, _ = written
    model, spec = rewriter.load_model(str(path))
    # feature size 16 px, output rule: layer4.0.conv1 has r_out_min 15 (ok), layer4.0.conv2 31 > 16 starts the
    # final run; cut before layer4.0 the model would end with layer3.1.conv2 (23 > 16), before layer3.1 with
    # layer3.0.conv2 (19); before layer3.0 with layer2.1.conv2 (15): the cut goes after layer2 (128 channels)
    recipe = {"steps": [{"truncate": {"rule": "output", "feature_size": 16}}]}
    result = rewriter.rewrite(model, recipe, input_size=32, latency=False)
    assert result.model.head.fc.in_features == 128
    target = tmp_path / "twice.pt"
    rewriter.save(result.model, target, spec=spec, recipe=result.recipe, input_size=(32, 32))
    reloaded = rewriter.load(target)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(reloaded.eval()(x), result.model.eval()(x))


def test_a_model_file_does_not_take_architecture_arguments(written):
    path, _ = written
    with pytest.raises(rewriter.ModelNotFoundError, match="fixes its architecture"):
        rewriter.load_model(str(path), num_classes=5)


def test_pt2_exports_a_program_that_runs_without_rewriter(written, tmp_path):
    _, result = written
    target = tmp_path / "model.pt2"
    rewriter.save(
        result.model,
        target,
        spec=rewriter.ModelSpec("resnet18", "torchvision", 10),
        recipe=result.recipe,
        input_size=(32, 32),
        fmt="pt2",
    )
    program = torch.export.load(target)
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(program.module()(x), result.model.eval()(x), atol=1e-5)


def test_a_file_whose_base_was_a_pickle_needs_trust(tmp_path):
    model, _ = rewriter.load_model("cifar_vgg11")
    torch.save(model, tmp_path / "base.pt")
    base, spec = rewriter.load_model(str(tmp_path / "base.pt"), trust_pickle=True)
    result = rewriter.rewrite(base, {"steps": ["truncate"]}, input_size=32, latency=False)
    rewriter.save(result.model, tmp_path / "out.pt", spec=spec, recipe=result.recipe, input_size=(32, 32))
    with pytest.raises(rewriter.UntrustedPickleError, match="Pass trust_pickle=True"):
        rewriter.load(tmp_path / "out.pt")
    assert rewriter.load(tmp_path / "out.pt", trust_pickle=True).head.fc.in_features == 512  # conv 5 of VGG11


def test_a_model_file_cannot_make_us_import_code_it_names(tmp_path):
    marker = tmp_path / "pwned"
    evil = {
        "format": "rewriter-model", "version": 1,
        "base": {"source": "os:system", "kind": "torchvision", "num_classes": None,
                 "model_args": {"command": f"touch {marker}"}, "weights": None, "history": []},
        "recipe": {"input_size": [32, 32], "num_classes": None, "steps": [{"truncate": {}}]},
        "input_size": [32, 32], "state_dict": {},
    }  # fmt: skip
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(rewriter.UntrustedPickleError, match="built from 'os:system'"):
        rewriter.load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_leaf_modules_are_recorded_and_replayed(tmp_path):
    from .. import nets

    model = nets.LeafSandwich()
    spec = rewriter.ModelSpec("tests.nets:LeafSandwich", "import")
    result = rewriter.rewrite(model, {"steps": [{"truncate": {"feature_size": 2}}]}, input_size=32, num_classes=3,
                              leaf_modules=["DataDependent"], latency=False)  # fmt: skip
    assert not result.plans[0].is_noop
    path = tmp_path / "leaf.pt"
    rewriter.save(result.model, path, spec=spec, recipe=result.recipe, input_size=(32, 32),
                  leaf_modules=["DataDependent"])  # fmt: skip
    assert torch.load(path, weights_only=True)["leaf_modules"] == ["DataDependent"]
    loaded = rewriter.load(path, trust_pickle=True)  # an import spec base needs trust: it runs that code
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.eval()(x), result.model.eval()(x))


def test_an_exported_program_is_not_mistaken_for_a_pickle(written, tmp_path):
    _, result = written
    target = tmp_path / "model.pt2"
    rewriter.save(result.model, target, spec=rewriter.ModelSpec("resnet18", "torchvision", 10),
                  recipe=result.recipe, input_size=(32, 32), fmt="pt2")  # fmt: skip
    with pytest.raises(rewriter.ModelNotFoundError, match=r"is a torch\.export program"):
        rewriter.load_model(str(target))


def test_written_files_get_the_usual_permissions(written):
    import os

    path, _ = written
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_load_model_rebuilds_a_model_file_in_a_fresh_process_that_imported_only_models(written):
    """Loading does not depend on what was imported before: a fresh interpreter that imports only
    ``rewriter.models`` rebuilds the file (the truncated model, not a refusal to unpickle it), and never
    imported the engine before it was asked to."""
    path, _ = written
    script = (
        "import sys, torch\n"
        "from rewriter.models import load_model\n"
        "assert 'rewriter.engine' not in sys.modules\n"
        f"model, spec = load_model({str(path)!r})\n"
        "x = torch.zeros(1, 3, 32, 32)\n"
        "print(type(model).__name__, spec.source, list(model.eval()(x).shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Truncated", "resnet18", "[1,", "10]"]


def test_a_pickled_module_read_as_a_model_source_is_not_taken_for_a_model_file(tmp_path):
    from rewriter.models import read_source

    torch.save(rewriter.load_model("cifar_vgg11")[0], tmp_path / "whole.pt")
    read = read_source(str(tmp_path / "whole.pt"), trust_pickle=True)
    assert read.kind == "module"
    with pytest.raises(rewriter.InvalidFileError, match="not a model file written by rewriter"):
        rewriter.load_model_file(read, trust_pickle=True)
