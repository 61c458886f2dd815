"""remove-stem-downsampling: the paper's FLOPs, the moved border, both modes, and the refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewriter

from .. import nets
from ..conftest import conv_numbering


def remove_stem(model_name: str, size: int = 32, **params) -> rewriter.Result:
    model, _ = rewriter.load_model(model_name, num_classes=10)
    recipe = {"steps": [{"remove-stem-downsampling": params}]}
    return rewriter.rewrite(model, recipe, input_size=size, latency=False)


@pytest.mark.parametrize(
    ("model_name", "gflops_before", "gflops_after"),
    [
        # paper 000 V: ResNet18 0.04 -> 0.56 GFLOPs, ResNet34 "0.76" (0.076, digest 11) -> 1.16 at 32 px (MACs)
        ("resnet18", 0.04, 0.56),
        ("resnet34", 0.076, 1.16),
    ],
)
def test_resnet_flops_match_the_paper(model_name, gflops_before, gflops_after):
    result = remove_stem(model_name)
    before, after = result.report.rows[0].flops / 1e9, result.report.rows[1].flops / 1e9
    assert before == pytest.approx(gflops_before, rel=0.1)
    assert after == pytest.approx(gflops_after, rel=0.02)


def test_strides_mode_keeps_the_weights_and_removes_both_downsamplings():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    result = rewriter.rewrite(model, {"steps": ["remove-stem-downsampling"]}, input_size=32, latency=False)
    new = result.model
    assert new.conv1.stride == (1, 1) and torch.equal(new.conv1.weight, model.conv1.weight)
    assert isinstance(new.maxpool, nn.Identity)
    assert [e.target for e in result.plans[0].edits] == ["conv1", "maxpool"]


def test_count_limits_the_downsamplings_removed():
    result = remove_stem("resnet18", count=1)
    assert result.model.conv1.stride == (1, 1)
    assert isinstance(result.model.maxpool, nn.MaxPool2d)


def test_the_border_moves_later():
    # Output rule, hand check: after the change conv1 is 7x7/1 (r 7) and the pool is gone, so every later
    # layer grows 4x slower; r_out_min of the convs of layer4.1 is 23 then 39: b_min moves from conv 11 to 17.
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    result = rewriter.rewrite(model, {"steps": ["remove-stem-downsampling"]}, input_size=32, latency=False)
    before = rewriter.analyze(model, 32, border_rule="output", flops=False)
    after = rewriter.analyze(result.model, 32, border_rule="output", flops=False)
    assert conv_numbering(before).index(before.border_layer_min) + 1 == 11
    assert conv_numbering(after).index(after.border_layer_min) + 1 == 17


def test_cifar_stem_mode_builds_the_cifar_resnet():
    # The CIFAR ResNet18 of the zoo is torchvision's ResNet18 with exactly this stem: same parameter count.
    result = remove_stem("resnet18", mode="cifar-stem")
    reference, _ = rewriter.load_model("cifar_resnet18")
    assert result.report.rows[1].params == sum(p.numel() for p in reference.parameters()) == 11173962
    assert result.model.conv1.kernel_size == (3, 3) and result.model.conv1.stride == (1, 1)
    # digest 6.3: 0.555 GMACs for the CIFAR ResNet18 at 32 px with 10 classes
    assert result.report.rows[1].flops / 1e9 == pytest.approx(0.556, abs=0.002)


def test_a_plain_net_loses_its_first_pooling():
    result = remove_stem("vgg16")
    assert [e.target for e in result.plans[0].edits] == ["features.4"]
    assert isinstance(result.model.features[4], nn.Identity)
    assert "plain stack" in result.plans[0].notes[0]


def test_a_head_flattening_a_larger_map_is_refused_with_the_reason():
    with pytest.raises(
        rewriter.RewriteError, match=r"head 'fc' reads a flattened feature map of fixed size \(8x8"
    ):
        rewriter.rewrite(
            nets.FlattenHead(), {"steps": ["remove-stem-downsampling"]}, input_size=16, latency=False
        )


def test_a_head_flattening_a_1x1_map_gets_global_pooling():
    # cifar_vgg16 at 32 px: five 2x2 pools leave 1x1 for the flattening Linear; without the first pool the
    # last one leaves 2x2, which global pooling brings back to the 512 features the head reads
    model, _ = rewriter.load_model("cifar_vgg16", num_classes=10)
    result = rewriter.rewrite(model, {"steps": ["remove-stem-downsampling"]}, input_size=32, latency=False)
    assert [e.target for e in result.plans[0].edits] == ["features.6", "features.43"]
    last_pool = result.model.features[43]
    assert isinstance(last_pool[1], nn.AdaptiveAvgPool2d)
    maps = last_pool[0](result.model.features[:43].eval()(torch.randn(1, 3, 32, 32)))
    assert maps.shape == (1, 512, 2, 2)
    assert result.model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in result.model.parameters()) == sum(p.numel() for p in model.parameters())


def test_cifar_stem_needs_a_single_stem_conv():
    # googlenet's stem has three convolutions (conv1, conv2, conv3) before inception3a
    with pytest.raises(rewriter.RewriteError, match="exactly one conv module, this one has 3"):
        remove_stem("googlenet", 64, mode="cifar-stem")


def test_mobilenet_v2_stem_is_its_first_conv():
    result = remove_stem("mobilenet_v2")
    assert [e.target for e in result.plans[0].edits] == ["features.0.0"]
    assert "first block 'features.1' (InvertedResidual)" in result.plans[0].notes[0]


class SharedPool(nn.Module):
    """One max-pool module used after the stem conv and after every stage: changing it changes them all."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1))
                                      for _ in range(2)))  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x):
        x = self.pool(self.stem(x))
        for block in self.blocks:
            x = self.pool(block(x))
        return self.head(x)


def test_a_shared_stem_module_is_refused():
    with pytest.raises(rewriter.RewriteError, match=r"module 'pool' runs 3 times \(pool, pool_1, pool_2\)"):
        rewriter.rewrite(SharedPool(), {"steps": ["remove-stem-downsampling"]}, input_size=32, latency=False)


def test_the_reason_names_the_stride_removed():
    result = remove_stem("convnext_tiny")
    assert "grows 4x slower" in result.plans[0].edits[0].reason
