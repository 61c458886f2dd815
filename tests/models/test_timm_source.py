"""``timm:NAME`` as a model source: arguments passed to ``timm.create_model``, random weights unless asked,
pretrained weights only from the user's cache, the target size for models built for one size."""

from __future__ import annotations

import json

import pytest
import torch

import rewriter
from rewriter.cli import main
from rewriter.models import load_model

timm = pytest.importorskip("timm")


def test_a_timm_model_is_built_with_the_given_arguments_and_recorded():
    model, spec = load_model("timm:resnet18", num_classes=7, model_args={"drop_rate": 0.25})
    assert isinstance(model, timm.models.ResNet)
    assert model.fc.out_features == 7 and model.drop_rate == 0.25
    assert (spec.source, spec.kind, spec.num_classes, dict(spec.model_args)) == (
        "timm:resnet18",
        "timm",
        7,
        {"drop_rate": 0.25},
    )


def test_weights_are_random_unless_asked(monkeypatch):
    calls = []
    real = timm.create_model

    def spy(name, **kwargs):
        calls.append(kwargs)
        return real(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    load_model("timm:resnet10t")
    assert calls[0]["pretrained"] is False


def test_an_unknown_timm_name_lists_close_ones():
    with pytest.raises(
        rewriter.ModelNotFoundError, match=r"unknown timm model 'resnet181'; did you mean 'resnet18"
    ):
        load_model("timm:resnet181")


def test_a_model_built_for_a_fixed_size_is_built_for_the_target_size():
    model, spec = load_model("timm:vit_tiny_patch16_224", num_classes=10, input_size=(64, 64))
    assert spec.model_args["img_size"] == [64, 64]
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    _, plain = load_model("timm:resnet18", input_size=(64, 64))  # no fixed size: no img_size
    assert "img_size" not in plain.model_args


def _fake_hub_cache(root, repo: str, files: dict[str, bytes]) -> None:
    """The layout huggingface_hub gives a downloaded repository (refs/main -> snapshots/<commit>/file)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Caches that hold nothing, and no network (HF_HUB_OFFLINE): pretrained weights must come from them."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    return tmp_path


def test_pretrained_weights_missing_from_the_cache_are_refused_with_the_fetch_command(empty_cache):
    with pytest.raises(
        rewriter.WeightsError, match=r"not in your cache, and rewriter downloads nothing: fetch"
    ):
        load_model("timm:resnet10t", model_args={"pretrained": True})


def test_pretrained_weights_come_from_the_users_cache(empty_cache):
    from safetensors.torch import save

    reference, _ = load_model("timm:resnet10t")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    repo = timm.models.get_pretrained_cfg("resnet10t").hf_hub_id
    _fake_hub_cache(empty_cache / "hub", repo, {"model.safetensors": save(state)})
    model, spec = load_model("timm:resnet10t", model_args={"pretrained": True})
    assert spec.model_args == {"pretrained": True}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_a_rewritten_timm_model_file_rebuilds_without_trusting_a_pickle(tmp_path):
    model, spec = load_model("timm:resnet10t", num_classes=10)
    result = rewriter.rewrite(model, ["truncate"], input_size=32, latency=False, measure_cost=False)
    path = tmp_path / "out.pt"
    rewriter.save(result.model, path, spec=spec, recipe=result.recipe, input_size=(32, 32))
    loaded = rewriter.load(path)  # a timm name builds no code chosen by the file: no trust flag needed
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), result.model.eval()(x))


def test_models_lists_timms_names(capsys):
    assert main(["models", "--timm", "resnet1*", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)["timm"]
    assert "resnet18" in names and all(n.startswith("resnet1") for n in names)


def test_analyze_takes_a_timm_source_and_builds_it_for_the_size(capsys):
    assert main(["analyze", "timm:levit_128s", "--input-size", "64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input_size"] == [64, 64] and result["layers"]
