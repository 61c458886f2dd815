"""Where models come from: names, import specs, weights files, pickles, and the errors for each."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import rewriter
from rewriter.models import zoo
from rewriter.models.sources import load_model, parse_model_args, torchvision_models


def test_torchvision_names_build_with_the_requested_head():
    model, spec = load_model("resnet18", num_classes=10)
    assert model.fc.out_features == 10
    assert spec.kind == "torchvision" and spec.num_classes == 10


def test_there_are_80_torchvision_classification_models():
    assert len(torchvision_models()) == 80


def test_builtin_models_default_to_ten_classes():
    model, spec = load_model("cifar_vgg16")
    assert model.classifier.out_features == 10
    assert spec.kind == "builtin"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        # paper 003 Table 3 (CIFAR-10): VGG16 14.73 M, MobileNet 3.22 M, ResNet50 23.52 M
        ("cifar_vgg16", 14.73e6),
        ("cifar_mobilenet", 3.22e6),
        ("cifar_resnet50", 23.52e6),
    ],
)
def test_builtin_cifar_models_have_the_papers_parameter_counts(name, params):
    model, _ = load_model(name)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(params, rel=0.001)


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_builtin_model_runs_at_32_px(name):
    model, _ = load_model(name, num_classes=7)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert zoo.get_model_doc(name)


def test_an_unknown_name_lists_close_matches():
    with pytest.raises(
        rewriter.ModelNotFoundError, match=r"unknown model 'resnet19'; did you mean 'resnet18'"
    ):
        load_model("resnet19")
    with pytest.raises(rewriter.ModelNotFoundError, match="'cifar_vgg16'"):
        load_model("cifar_vgg61")


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A module ``usernets`` in the current folder, as a user's own code would be."""
    (tmp_path / "usernets.py").write_text(
        textwrap.dedent(
            """
            import torch.nn as nn

            def build(width=4, num_classes=3):
                return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(width, num_classes))

            def no_classes(width=4):
                return nn.Conv2d(3, width, 3)

            instance = nn.Conv2d(3, 2, 3)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "usernets"
    sys.modules.pop("usernets", None)


def test_import_specs_call_the_factory_with_model_args(user_package):
    model, spec = load_model(f"{user_package}:build", model_args={"width": 6}, num_classes=5)
    assert model[0].out_channels == 6 and model[3].out_features == 5
    assert spec.kind == "import" and dict(spec.model_args) == {"width": 6}


def test_import_spec_errors_say_what_is_wrong(user_package):
    with pytest.raises(rewriter.ModelNotFoundError, match="did you mean 'build'"):
        load_model(f"{user_package}:biuld")
    with pytest.raises(
        rewriter.ModelNotFoundError,
        match=r"cannot import 'nosuchpackage\.nets'.*No module named 'nosuchpackage'",
    ):
        load_model("nosuchpackage.nets:build")
    with pytest.raises(rewriter.ModelNotFoundError, match="does not take a class count; drop `num_classes`"):
        load_model(f"{user_package}:no_classes", num_classes=3)
    with pytest.raises(
        rewriter.ModelNotFoundError, match=r"cannot build .* unexpected keyword argument 'depth'"
    ):
        load_model(f"{user_package}:build", model_args={"depth": 3})


def test_an_import_spec_may_name_a_module_instance(user_package):
    model, _ = load_model(f"{user_package}:instance")
    assert isinstance(model, torch.nn.Conv2d)


def test_model_args_are_parsed_as_yaml_scalars():
    assert parse_model_args(["width=32", "pretrained=false", "name=abc", "ratio=0.5"]) == {
        "width": 32,
        "pretrained": False,
        "name": "abc",
        "ratio": 0.5,
    }
    with pytest.raises(rewriter.UsageError, match="key=value"):
        parse_model_args(["width"])


def test_weights_load_with_weights_only(tmp_path):
    model, _ = load_model("cifar_vgg11")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    loaded, spec = load_model("cifar_vgg11", weights=tmp_path / "ckpt.pth")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert spec.weights == str(tmp_path / "ckpt.pth")


def test_weights_saved_from_data_parallel_load(tmp_path):
    model, _ = load_model("cifar_vgg11")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    loaded, _ = load_model("cifar_vgg11", weights=tmp_path / "dp.pth")
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


def test_mismatched_weights_name_the_keys(tmp_path):
    model, _ = load_model("resnet18")  # 1000 classes
    state = model.state_dict()
    del state["layer1.0.bn1.running_mean"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(rewriter.WeightsError) as info:
        load_model("resnet18", num_classes=10, weights=tmp_path / "w.pth")
    message = str(info.value)
    assert "1 missing (layer1.0.bn1.running_mean)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "fc.weight: file [1000, 512] vs model [10, 512]" in message
    assert "is `num_classes` right?" in message


def test_pickled_models_need_the_trust_flag(tmp_path):
    model, _ = load_model("cifar_vgg11")
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(rewriter.UntrustedPickleError, match="Pass trust_pickle=True"):
        load_model(str(tmp_path / "whole.pt"))
    loaded, spec = load_model(str(tmp_path / "whole.pt"), trust_pickle=True)
    assert spec.kind == "file"
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


def test_a_state_dict_given_as_the_model_says_how_to_use_it(tmp_path):
    model, _ = load_model("cifar_vgg11")
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    with pytest.raises(
        rewriter.WeightsError, match="give the architecture as the model and the file as `weights`"
    ):
        load_model(str(tmp_path / "sd.pth"))


def test_a_pickled_object_given_as_weights_is_refused(tmp_path):
    model, _ = load_model("cifar_vgg11")
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(rewriter.WeightsError, match="weights_only=True"):
        load_model("cifar_vgg11", weights=tmp_path / "whole.pt")


def test_a_trusted_pickle_that_cannot_be_unpickled_says_why_not_corrupt(tmp_path, monkeypatch):
    (tmp_path / "gone_net.py").write_text(
        "from torch import nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n        return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_net

    torch.save(gone_net.Net(), tmp_path / "whole.pt")
    monkeypatch.delitem(sys.modules, "gone_net")
    (tmp_path / "gone_net.py").unlink()  # the class's module is not importable where the file is loaded
    with pytest.raises(rewriter.WeightsError) as caught:
        load_model(str(tmp_path / "whole.pt"), trust_pickle=True)
    assert "No module named 'gone_net'" in str(caught.value) and "corrupt" not in str(caught.value)
