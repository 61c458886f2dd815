"""Pretrained torchvision weights (issue 24.1): ``--model-arg weights=IMAGENET1K_V1`` or ``DEFAULT`` from the
user's torch hub cache, never downloaded; the kept layers keep them through every rewrite and a model file.

The "pretrained" weights are a state dict made here, placed in a temporary ``TORCH_HOME`` under the file
name torchvision's weights entry names (``resnet18-f37072fd.pth``); every value differs from an init."""

from __future__ import annotations

import pytest
import torch
import torch.hub

import rewriter
from rewriter import ModelNotFoundError, RewriterWarning, WeightsError
from rewriter.engine import Plan

from ..cli_runner import run

FILE = "resnet18-f37072fd.pth"  # the basename of ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture(autouse=True)
def no_download(monkeypatch, tmp_path):
    """A hub cache of our own, and any download an error."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def refuse(*args, **kwargs):
        raise AssertionError("rewriter downloaded something")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def cached(tmp_path) -> dict[str, torch.Tensor]:
    """A resnet18 state dict of 1000 classes (every float in [0.5, 1.5), seed 7) in the hub cache."""
    shapes = rewriter.load_model("resnet18")[0].state_dict()
    generator = torch.Generator().manual_seed(7)
    state = {k: torch.rand(v.shape, generator=generator) + 0.5 if v.is_floating_point() else v
             for k, v in shapes.items()}  # fmt: skip
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / FILE)
    return state


def assert_same(state: dict[str, torch.Tensor], model: torch.nn.Module, *, skip=()) -> int:
    """Every tensor of ``model`` but ``skip`` is the cached one, bit for bit; returns how many."""
    own = {k: v for k, v in model.state_dict().items() if k not in skip}
    assert all(torch.equal(state[k], v) for k, v in own.items())
    return len(own)


@pytest.mark.parametrize("name", ["IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"])
def test_the_cached_weights_are_loaded_by_their_name(cached, name):
    model, spec = rewriter.load_model("resnet18", model_args={"weights": name})
    assert assert_same(cached, model) == len(cached)
    assert spec.model_args == {"weights": "IMAGENET1K_V1"}  # DEFAULT is IMAGENET1K_V1 for resnet18


def test_weights_not_cached_are_refused_with_the_line_that_fetches_them():
    with pytest.raises(WeightsError, match="not in your torch hub cache") as caught:
        rewriter.load_model("resnet18", model_args={"weights": "DEFAULT"})
    assert "torchvision.models.get_model('resnet18', weights='IMAGENET1K_V1')" in str(caught.value)


def test_unknown_weights_are_refused_with_the_names_that_exist(cached):
    with pytest.raises(
        ModelNotFoundError, match=r"did you mean 'IMAGENET1K_V1'.* Its weights: DEFAULT, IMAGENET1K_V1"
    ):
        rewriter.load_model("resnet18", model_args={"weights": "IMAGENET1K_V2"})


def test_another_number_of_classes_keeps_every_layer_but_the_head(cached):
    with pytest.warns(RewriterWarning, match="fc.weight, fc.bias are new"):
        model, _ = rewriter.load_model("resnet18", num_classes=10, model_args={"weights": "DEFAULT"})
    assert model.fc.out_features == 10
    assert assert_same(cached, model, skip={"fc.weight", "fc.bias"}) == len(cached) - 2


def _old_key(plan: Plan, key: str) -> str:
    return next((m.old + key[len(m.new) :] for m in plan.moved if key.startswith(m.new)), key)


@pytest.mark.parametrize(
    "step",
    [{"truncate": {}}, {"remove-stem-downsampling": {}}, {"reposition-downsampling": {"site": 1, "move": 1}}],
)
def test_kept_layers_keep_the_pretrained_weights_through_a_rewrite(cached, step):
    model, _ = rewriter.load_model("resnet18", model_args={"weights": "IMAGENET1K_V1"})
    result = rewriter.rewrite(model, {"steps": [step]}, input_size=32, latency=False)
    plan = result.plans[0]
    kept = 0
    for key, tensor in result.model.state_dict().items():
        if not any(key == m or key.startswith(m + ".") for m in plan.new_modules):
            assert torch.equal(cached[_old_key(plan, key)], tensor), key
            kept += 1
    assert kept > 50


def test_a_rewritten_pretrained_model_file_loads_without_the_cache(capsys, cached, tmp_path):
    out = tmp_path / "r18.pt"
    code, _, err = run(capsys, "rewrite", "resnet18", "--model-arg", "weights=IMAGENET1K_V1", "--input-size", "32",
                       "--strategy", "truncate", "--no-latency", "-o", str(out))  # fmt: skip
    assert code == 0, err
    (tmp_path / "torch" / "hub" / "checkpoints" / FILE).unlink()
    loaded = rewriter.load(out)
    # truncate moves the kept layers under features. and puts a new head after them
    state = loaded.state_dict()
    kept = [k for k in state if k.startswith("features.")]
    assert len(kept) > 50 and all(torch.equal(cached[k.removeprefix("features.")], state[k]) for k in kept)
    assert set(state) - set(kept) == {"head.fc.weight", "head.fc.bias"}
