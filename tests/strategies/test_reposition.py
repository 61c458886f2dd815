"""reposition-downsampling: receptive fields after a dropped or moved downsampling, worked out by hand.

ResNet18 (torchvision) at 32 px. Per axis, r_out = r_in + (k - 1) * j_in and j_out = j_in * stride. In a
ResNet, every block's skip path (identity or 1x1 conv) leaves r_min as it was, so r_min at every block
output is the stem's field ``r_stem``, and a block's second conv sees ``r_stem + 2 * j`` where j is the
jump inside that block. Baseline: conv1 7x7/2 gives r 7, j 2; maxpool 3x3/2 gives r 7 + 2 * 2 = 11, j 4;
layer2/3/4 each double j, so layer4 works at j 32 and layer4.1.conv2 sees 11 + 2 * 32 = 75.
"""

from __future__ import annotations

import pytest
import torch

import rewriter
from rewriter.analysis import downsampling_sites


def rewritten(name: str, params: dict, size: int = 32) -> rewriter.Result:
    model, _ = rewriter.load_model(name, num_classes=10)
    return rewriter.rewrite(
        model, [{"reposition-downsampling": params}], input_size=size, latency=False, measure_cost=False
    )


def field(model, layer: str, size: int = 32) -> tuple:
    return rewriter.analyze(model, size, flops=False).layer(layer).r_in_min


def test_resnet18_has_five_sites_the_stem_conv_the_pool_and_three_strided_blocks():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    sites = downsampling_sites(rewriter.analyze(model, 32, flops=False).graph)
    assert [s.layers for s in sites] == [
        ("conv1",),
        ("maxpool",),
        ("layer2.0.conv1", "layer2.0.downsample.0"),
        ("layer3.0.conv1", "layer3.0.downsample.0"),
        ("layer4.0.conv1", "layer4.0.downsample.0"),
    ]
    assert field(model, "layer4.1.conv2") == (75, 75)


def test_dropping_the_max_pool_halves_every_later_jump():
    """conv1 r 7, j 2; no pool: r_stem 7, layer4 at j 16: layer4.1.conv2 sees 7 + 2 * 16 = 39."""
    result = rewritten("resnet18", {"site": 1, "move": 0})
    assert isinstance(result.model.maxpool, torch.nn.Identity)
    assert field(result.model, "layer4.1.conv2") == (39, 39)
    assert field(result.model, "layer2.0.conv2") == (7 + 2 * 2, 7 + 2 * 2)


def test_dropping_the_last_blocks_stride_changes_only_the_last_stage():
    """r_stem stays 11; layer4 at j 16: 11 + 2 * 16 = 43; its maps stay 2x2 (32 / 16) instead of 1x1."""
    result = rewritten("resnet18", {"site": 4, "move": 0})
    model = result.model
    assert model.layer4[0].conv1.stride == (1, 1) and model.layer4[0].downsample[0].stride == (1, 1)
    analysis = rewriter.analyze(model, 32, flops=False)
    assert analysis.layer("layer4.1.conv2").r_in_min == (43, 43)
    assert analysis.layer("layer4.1.conv2").output_size == (2, 2)
    assert analysis.layer("layer3.1.conv2").r_in_min == (11 + 2 * 16, 11 + 2 * 16)


def test_moving_the_max_pool_one_boundary_later_puts_it_after_layer1():
    """conv1 r 7, j 2; layer1 at j 2: its second conv sees 7 + 2 * 2 = 11; the pool (3x3/2) after layer1
    makes r_min 7 + 2 * 2 = 11 and j 4, as before: from layer2 on everything is the baseline's (75)."""
    original, _ = rewriter.load_model("resnet18", num_classes=10)
    steps = [{"reposition-downsampling": {"site": 1, "move": 1}}]
    model = rewriter.rewrite(original, steps, input_size=32, latency=False, measure_cost=False).model
    assert isinstance(model.maxpool, torch.nn.Identity)
    pool = model.layer1[1][1]
    assert isinstance(pool, torch.nn.MaxPool2d) and (pool.kernel_size, pool.stride) == ((3, 3), (2, 2))
    assert torch.equal(model.layer1[1][0].conv1.weight, original.layer1[1].conv1.weight)
    analysis = rewriter.analyze(model, 32, flops=False)
    assert analysis.layer("layer1.0.conv2").r_in_min == (11, 11)
    assert analysis.layer("layer1.0.conv2").output_size == (16, 16)
    assert analysis.layer("layer4.1.conv2").r_in_min == (75, 75)


def test_moving_a_strided_block_puts_a_max_pool_before_the_next_site():
    """layer2 at stride 1 works at j 4: layer2.0.conv2 sees 11 + 2 * 4 = 19; a 2x2/2 max-pool after
    layer2.1 gives 11 + 1 * 4 = 15 and j 8; layer3 (j 16): 15 + 2 * 16 = 47 at layer3.1.conv2; layer4
    (j 32): 15 + 2 * 32 = 79."""
    result = rewritten("resnet18", {"site": 2, "move": 1})
    pool = result.model.layer2[1][1]
    assert isinstance(pool, torch.nn.MaxPool2d) and (pool.kernel_size, pool.stride) == ((2, 2), (2, 2))
    analysis = rewriter.analyze(result.model, 32, flops=False)
    assert analysis.layer("layer2.0.conv2").r_in_min == (19, 19)
    assert analysis.layer("layer3.1.conv2").r_in_min == (47, 47)
    assert analysis.layer("layer4.1.conv2").r_in_min == (79, 79)


def test_dropping_vgg16s_first_pool_moves_the_border_two_convs_later():
    """cifar_vgg16 at 32 px without its first pool: conv 3 7, conv 4 9, pool 2 (2x2) 10 and j 2, convs 5-7
    14, 18, 22, pool 3 24 and j 4, conv 8 32, conv 9 40: conv 10 (features.30) is the first whose input
    exceeds 32. Its flattening head reads a 2x2 map now, so the last pool gets global average pooling."""
    result = rewritten("cifar_vgg16", {"site": 0, "move": 0})
    analysis = rewriter.analyze(result.model, 32, flops=False)
    assert analysis.border_layer_min == "features.30"
    assert analysis.layer("features.27").r_in_min == (32, 32)
    assert isinstance(result.model.features[43][1], torch.nn.AdaptiveAvgPool2d)
    assert result.model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"site": 5, "move": 0}, "site 5 does not exist: the model has 5"),
        ({"site": 4, "move": 1}, "site 4 has 0 later site"),
        ({"site": 2, "move": 3}, "site 2 has 2 later site"),
    ],
)
def test_a_site_or_a_move_that_does_not_exist_is_refused(params, message):
    with pytest.raises(rewriter.RewriteError, match=message):
        rewritten("resnet18", params)
