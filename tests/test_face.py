"""The package face: every error a caller may catch is exported beside the others, each load function returns
what its name says (``rewriter.load`` a model ready for inference), and ``rewriter.optimize`` is a plain
package whose function is ``rewriter.optimize_model``."""

import subprocess
import sys
import types

import pytest
import torch

import rewriter


@pytest.mark.parametrize("name", ["DataError", "OptimizeError", "StudyError", "TrainError"])
def test_the_errors_of_every_package_are_exported_and_are_rewriter_errors(name):
    error = getattr(rewriter, name)
    assert name in rewriter.__all__ and issubclass(error, rewriter.RewriterError)


def test_a_loaded_model_file_is_in_eval_mode(tmp_path):
    model, spec = rewriter.load_model("cifar_vgg11", num_classes=10)
    result = rewriter.rewrite(model, ["truncate"], input_size=32, latency=False)
    rewriter.save(
        result.model.train(), tmp_path / "m.pt", spec=spec, recipe=result.recipe, input_size=(32, 32)
    )
    loaded = rewriter.load(str(tmp_path / "m.pt"))
    assert not any(m.training for m in loaded.modules())


def test_each_load_function_returns_what_its_name_says(tmp_path):
    model, spec = rewriter.load_model("cifar_vgg11", num_classes=10)  # any source: the module and its spec
    assert isinstance(model, torch.nn.Module) and spec.source == "cifar_vgg11" and spec.num_classes == 10
    result = rewriter.rewrite(model, ["truncate"], input_size=32, latency=False)
    path = tmp_path / "m.pt"
    rewriter.save(result.model, path, spec=spec, recipe=result.recipe, input_size=(32, 32))
    record = rewriter.load_model_file(path)  # a model file: the model with what the file records
    assert isinstance(record, rewriter.LoadedModel)
    assert record.input_size == (32, 32) and record.recipe.to_dict() == result.recipe.to_dict()
    assert record.spec.source == "cifar_vgg11"
    alone = rewriter.load(path)  # the model alone, for inference
    assert isinstance(alone, torch.nn.Module) and not alone.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(alone(x), result.model.eval()(x))


def test_the_older_name_of_load_model_file_still_works_and_says_so(tmp_path):
    model, spec = rewriter.load_model("cifar_vgg11", num_classes=10)
    rewriter.save(
        model, tmp_path / "m.pt", spec=spec, recipe=rewriter.Recipe.empty((32, 32)), input_size=(32, 32)
    )
    with pytest.warns(DeprecationWarning, match="load_model_file"):
        loaded = rewriter.engine.load(tmp_path / "m.pt")
    assert loaded.input_size == (32, 32)


def test_the_optimizer_is_a_plain_package_and_its_function_has_its_own_name():
    import rewriter.optimize

    assert type(rewriter.optimize) is types.ModuleType and not callable(rewriter.optimize)
    assert rewriter.optimize_model is rewriter.optimize.optimize
    assert "optimize_model" in rewriter.__all__ and "optimize" not in rewriter.__all__


def test_the_face_resolves_every_name_it_exports():
    for name in rewriter.__all__:
        assert getattr(rewriter, name) is not None, name


def test_a_subpackage_is_reached_as_an_attribute_without_importing_it_first():
    code = "import rewriter; print(type(rewriter.optimize).__name__, rewriter.optimize_model.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["module", "optimize"]
