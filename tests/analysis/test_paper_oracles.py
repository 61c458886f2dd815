"""Border layers and receptive fields against the papers' figures, each with the hand computation.

Conv layers are numbered 1-based in execution order, stem conv = 1, 1x1 downsample projections not
counted (digest 1.5). Recurrence (paper 000 eq. 1): r += (k - 1) * j; j *= stride.
"""

from __future__ import annotations

import pytest

from ..conftest import conv_numbering, first_conv_at_or_after

# r_in of every conv and pool of the CIFAR VGGs at 32 px, by hand. Pools are 2x2/2, convs 3x3/1.
# VGG16: c1 1->3, c2 3->5, M 5->6 (j=2), c3 6->10, c4 10->14, M 14->16 (j=4), c5 16->24, c6 24->32,
#        c7 32->40, M 40->44 (j=8; r_in 40 > 32: unproductive, the border), c8 44->60, ...
VGG16_R_IN = [1, 3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196]
VGG16_LAST_R = 196


@pytest.mark.parametrize(
    ("model", "conv_at_border"),
    [
        # VGG11: c1 1->3, M ->4 (j2), c2 4->8, M ->10 (j4), c3 10->18, c4 18->26, M ->30 (j8), c5 in 30 (ok),
        #        c6 in 46 > 32: conv 6.
        ("cifar_vgg11", 6),
        # VGG13: c1 1->3, c2 3->5, M ->6, c3 6->10, c4 10->14, M ->16, c5 16->24, c6 24->32, M in 32 (ok,
        #        not > 32) ->36, c7 in 36 > 32: conv 7.
        ("cifar_vgg13", 7),
        # VGG16: the pool after c7 has r_in 40 > 32 and is b_min; the first conv after it is conv 8.
        ("cifar_vgg16", 8),
        # VGG19: c5 16->24, c6 24->32, c7 in 32 (ok) ->40, c8 in 40 > 32: conv 8.
        ("cifar_vgg19", 8),
    ],
)
def test_vgg_border_is_the_conv_the_paper_reports(analysis_of, model, conv_at_border):
    analysis = analysis_of(model, 32)
    assert first_conv_at_or_after(analysis, analysis.border_layer_min) == conv_at_border
    assert analysis.border_layer_max == analysis.border_layer_min  # sequential: b_min = b_max


def test_vgg16_receptive_fields_follow_the_recurrence(analysis_of):
    analysis = analysis_of("cifar_vgg16", 32)
    spatial = [layer for layer in analysis.layers if layer.category in ("conv", "pool")]
    assert [layer.r_in_min[0] for layer in spatial] == VGG16_R_IN
    last_conv = [layer for layer in spatial if layer.category == "conv"][-1]
    assert last_conv.r_out_max == (VGG16_LAST_R, VGG16_LAST_R)
    assert analysis.border_layer_min == "features.23"  # the 2x2 pool after conv 7


def test_vgg19_last_receptive_field_is_252(analysis_of):
    # c1,c2 -> 5; M -> 6 (j2); c3,c4 -> 14; M -> 16 (j4); c5..c8 -> 48; M -> 52 (j8); c9..c12 -> 116;
    # M -> 124 (j16); c13..c16 -> 124 + 4 * 32 = 252 (dissertation 9.4.2).
    analysis = analysis_of("cifar_vgg19", 32)
    last_conv = analysis.layer(conv_numbering(analysis)[-1])
    assert last_conv.r_out_max == (252, 252)


def test_dilated_vgg19_border_is_conv_5(analysis_of):
    # k_eff = 3 * (3 - 1) + 1 = 7: c1 1->7, c2 7->13, M ->14 (j2), c3 14->26, c4 26->38, M in 38 > 32: the
    # pool is b_min and the first conv after it is conv 5 (paper 000 Fig. 6b).
    analysis = analysis_of("vgg19_dilated", 32)
    assert first_conv_at_or_after(analysis, analysis.border_layer_min) == 5
    assert analysis.layer("features.0").kernel_size == (3, 3)
    assert analysis.layer("features.0").dilation == (3, 3)
    assert analysis.layer("features.0").r_out_min == (7, 7)


def test_resnet18_without_skips_border_is_conv_5(analysis_of):
    # conv1 7x7/2: 1->7 (j2); maxpool 3x3/2: 7->11 (j4); then 3x3 convs add 8 each: conv 2 in 11, conv 3 in 19,
    # conv 4 in 27, conv 5 in 35 > 32 (paper 000 Fig. 6a).
    analysis = analysis_of("resnet18_noskip", 32)
    convs = conv_numbering(analysis)
    assert [analysis.layer(c).r_in_min[0] for c in convs[:5]] == [1, 11, 19, 27, 35]
    assert analysis.border_layer_min == convs[4]


# r_min of the output of every conv of the ImageNet-style ResNet18 (downsample projections excluded),
# digest 1.3, recomputed there independently: skips let r_min fall back to the stem's 11 at every block.
RESNET18_R_OUT_MIN = [7, 19, 27, 19, 27, 19, 35, 27, 43, 27, 59, 43, 75, 43, 107, 75, 139]


def test_resnet18_r_min_zigzags_as_the_digest_computes(analysis_of):
    analysis = analysis_of("resnet18", 32)
    convs = conv_numbering(analysis)
    assert [analysis.layer(c).r_out_min[0] for c in convs] == RESNET18_R_OUT_MIN


def test_resnet18_last_r_max_is_435(analysis_of):
    # skips ignored: 11 + 4*8 = 43; layer2: +2*4 (j8) = 51, +16*3 = 99; layer3: +2*8 = 115 (j16), +32*3 = 211;
    # layer4: +2*16 = 243 (j32), +64*3 = 435 (the dissertation prints 413; 435 is the arithmetic).
    analysis = analysis_of("resnet18", 32)
    assert analysis.layer("layer4.1.conv2").r_out_max == (435, 435)


@pytest.mark.parametrize(("model", "conv"), [("resnet18", 11), ("resnet34", 17)])
def test_resnet_b_min_under_the_output_rule_matches_the_dissertation(analysis_of, model, conv):
    # Output rule: final run of convs with r_out_min > 32. ResNet18: conv 10 = layer3.0.conv1 has 27, conv 11
    # (layer3.0.conv2) 59, and every later conv has r_out_min in {43, 75, 107, 139}. ResNet34: layer3 starts at
    # conv 16 (27) and conv 17 (59) starts the run (dissertation Fig. 60).
    analysis = analysis_of(model, 32, rule="output")
    assert conv_numbering(analysis).index(analysis.border_layer_min) + 1 == conv


def test_resnet18_b_max_is_conv_5(analysis_of):
    # Skips ignored, ResNet18 is the no-skip net of Fig. 6a: r_max of conv 5's input is 35 > 32 (Fig. 55a).
    analysis = analysis_of("resnet18", 32)
    assert conv_numbering(analysis).index(analysis.border_layer_max) + 1 == 5


def test_cifar_resnet18_last_receptive_field_is_109(analysis_of):
    # stem 3; layer1 +4*2 = 11; layer2 +2 (j2) +3*4 = 25; layer3 +4 (j4) +3*8 = 53; layer4 +8 (j8) +3*16 = 109.
    analysis = analysis_of("cifar_resnet18", 32)
    assert analysis.layer("layer4.1.conv2").r_out_max == (109, 109)
    assert analysis.layer("conv1").r_out_min == (3, 3)


def test_resnet18_stem_change_moves_nothing_but_flops(analysis_of):
    # FLOPs of the two ResNet18 variants at 32 px (paper 000 V: 0.04 -> 0.56 GFLOPs, in MACs). With 10 classes:
    # fvcore gives 0.037 G and 0.556 G (digest 6.3 recomputes 0.037 -> 0.555).
    base = analysis_of("resnet18", 32, flops=True)
    cifar = analysis_of("cifar_resnet18", 32, flops=True)
    head_1000_minus_10 = 512 * 990  # the torchvision model has 1000 classes, the CIFAR one 10
    assert (base.flops - head_1000_minus_10) / 1e9 == pytest.approx(0.037, abs=0.001)
    assert cifar.flops / 1e9 == pytest.approx(0.556, abs=0.002)
