"""truncate: what is kept, where the cut goes, and what the new head looks like."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewriter


def truncate(model_name: str, size: int = 32, **params) -> rewriter.Result:
    model, _ = rewriter.load_model(model_name, num_classes=10)
    return rewriter.rewrite(model, {"steps": [{"truncate": params}]}, input_size=size, latency=False)


def test_vgg16_keeps_convs_1_to_7_and_gets_a_256_channel_head():
    # Hand check (test_paper_oracles): under the input rule the pool after conv 7 (r_in 40 > 32) is b_min,
    # so convs 1-7 stay; conv 7 has 256 filters (cfg 64, 64, M, 128, 128, M, 256, 256, 256, ...).
    result = truncate("cifar_vgg16")
    convs = [m for m in result.model.features.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256]
    assert not any(isinstance(m, nn.MaxPool2d) for m in list(result.model.features.modules())[-3:])
    fc = result.model.head.fc
    assert (fc.in_features, fc.out_features) == (256, 10)
    assert result.plans[0].cut.at == "features.22"


def test_resnet18_cuts_at_a_block_boundary_and_keeps_the_activation():
    # Output rule, r_out_min of convs 1-11 (test_paper_oracles): 7, 19, 27, 19, 27, 19, 35, 27, 43, 27, 59.
    # b_min = layer3.0.conv2 (conv 11). Cut before its block layer3.0, the kept model would end with
    # layer2.1.conv2 (43 > 32), its own tail; before layer2.1 with layer2.0.conv2 (35); before layer2.0 with
    # layer1.1.conv2 (27): within the input, so the cut goes after layer1.
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    result = rewriter.rewrite(
        model, {"steps": [{"truncate": {"rule": "output"}}]}, input_size=32, latency=False
    )
    kept = {name for name, _ in result.model.features.named_children()}
    assert kept == {"conv1", "bn1", "relu", "maxpool", "layer1"}
    assert len(result.model.features.layer1) == 2  # whole blocks
    # the activation at the cut, taken independently from the original model with a forward hook
    captured = {}
    model.eval().layer1.register_forward_hook(lambda _m, _i, out: captured.setdefault("layer1", out))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        assert torch.equal(result.model.eval().features(x), captured["layer1"])
    assert result.model.head.fc.in_features == 64
    assert "b_min 'layer3.0.conv2' lies in block 'layer3.0'" in result.report.notes[0]


def test_keep_blocks_cuts_later():
    # one block more than the fixed point above (after layer1): the cut goes after layer2.0
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    recipe = {"steps": [{"truncate": {"rule": "output", "keep_blocks": 1}}]}
    result = rewriter.rewrite(model, recipe, input_size=32, latency=False)
    assert result.plans[0].cut.at == "layer2.0.relu_1"
    assert len(result.model.features.layer2) == 1
    assert result.model.head.fc.in_features == 128


def test_keep_blocks_past_the_last_block_is_refused():
    with pytest.raises(rewriter.RewriteError, match="keep_blocks=9 goes past the last block"):
        truncate("resnet18", rule="output", keep_blocks=9)


def test_nothing_is_cut_when_every_layer_is_productive():
    result = truncate("resnet18", 224)
    assert result.plans[0].is_noop
    assert "nothing to cut" in result.plans[0].notes[0]


def test_a_feature_size_moves_the_border_earlier():
    full = truncate("cifar_vgg16").plans[0].cut.at
    small = truncate("cifar_vgg16", feature_size=16).plans[0].cut.at
    # r_in: conv 5 16, conv 6 24 > 16: the cut moves before conv 6 (features.17), after conv 5's ReLU.
    assert (full, small) == ("features.22", "features.16")


def test_a_pretrained_baseline_is_told_that_the_head_is_untrained():
    model, _ = rewriter.load_model("cifar_vgg11")
    result = rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=32, latency=False, pretrained=True)
    assert any("the new head is not" in note for note in result.report.notes)


def test_truncated_model_keeps_stochastic_depth_switchable():
    # efficientnet_b0's StochasticDepth reads self.training in forward: traced through, fx would freeze the
    # flag. Kept as a module, it drops rows in training and is the identity in eval.
    model, _ = rewriter.load_model("efficientnet_b0", num_classes=10)
    result = rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=32, latency=False)
    depth = [m for m in result.model.features.modules() if type(m).__name__ == "StochasticDepth"]
    assert depth and "torchvision_ops_stochastic_depth" not in result.model.features.code
    x = torch.randn(64, 3, 32, 32)
    new = result.model.eval()
    assert torch.equal(new(x), new(x))  # deterministic in eval mode
    torch.manual_seed(0)
    new.train()
    loss = new(x).sum()
    loss.backward()
    assert result.model.head.fc.weight.grad is not None


def test_shufflenet_is_cut_at_a_feature_map_not_at_a_channel_split():
    # every ShuffleNet unit splits its channels in two (chunk): those points return tuples, not a map
    model, _ = rewriter.load_model("shufflenet_v2_x0_5", num_classes=10)
    result = rewriter.rewrite(
        model, {"steps": [{"truncate": {"feature_size": 24}}]}, input_size=64, latency=False
    )
    assert result.model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert "chunk" not in result.plans[0].cut.at


def test_a_channels_last_network_is_refused_with_the_reason():
    model, _ = rewriter.load_model("swin_t", num_classes=10)
    with pytest.raises(
        rewriter.RewriteError, match=r"no point every path passes through that is one \[N, C, H, W\]"
    ):
        rewriter.rewrite(model, {"steps": [{"truncate": {"feature_size": 6}}]}, input_size=64, latency=False)


def test_a_cut_that_would_keep_no_layer_is_refused():
    with pytest.raises(rewriter.RewriteError, match="a cut would keep no layer"):
        truncate("resnet18", rule="output", feature_size=4)


def test_leaf_modules_keep_their_insides():
    from .. import nets

    model = nets.LeafSandwich()
    recipe = {"steps": [{"truncate": {"feature_size": 2}}]}
    result = rewriter.rewrite(
        model, recipe, input_size=32, num_classes=3, leaf_modules=["DataDependent"], latency=False
    )
    assert hasattr(result.model.features.block, "conv")


def test_a_double_precision_model_gets_a_double_precision_head():
    model, _ = rewriter.load_model("cifar_vgg11")
    result = rewriter.rewrite(model.double(), {"steps": ["truncate"]}, input_size=32, latency=False)
    assert result.model.head.fc.weight.dtype == torch.float64


def test_feature_size_must_be_positive():
    with pytest.raises(
        rewriter.RecipeError, match="feature_size: 0 is out of range; expected 1 <= feature_size"
    ):
        truncate("cifar_vgg11", feature_size=0)
