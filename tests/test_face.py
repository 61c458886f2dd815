"""The package face: every error a caller may catch is exported beside the others, and ``rewriter.load`` gives a
model ready for inference."""

import pytest

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
