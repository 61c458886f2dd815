"""The optimizer's choices on the papers' models, against optima worked out by hand.

Receptive fields per axis: r_out = r_in + (k - 1) * j_in, j_out = j_in * stride (paper 000 eq. 1); FLOPs in
fvcore's convention: a conv costs k * k * c_in * c_out * H_out * W_out multiply-adds (bias free), an eval
batch norm 2 per output element, global average pooling 1 per input element, a Linear c_in * c_out, and
ReLU, max-pooling and additions nothing.
"""

from __future__ import annotations

import pytest

import rewriter
from rewriter.optimize import Budget, choose, rank_key
from tests.conftest import first_conv_at_or_after


def conv(k: int, c_in: int, c_out: int, h: int) -> int:
    return k * k * c_in * c_out * h * h


def bn(c: int, h: int) -> int:
    return 2 * c * h * h


@pytest.fixture(scope="module")
def vgg16_params():
    # prefer="fit": the hand-worked optimum below is the fit-first order's, the default before issue 20
    # made the choice cost first (test_cifar_vgg16_cost_first_is_the_fewest_parameters is that one's)
    return rewriter.optimize_model("cifar_vgg16", input_size=32, objective="params", prefer="fit")


def test_cifar_vgg16_by_params_is_truncated_at_the_border(vgg16_params, analysis_of):
    """cifar_vgg16 at 32 px (paper 000 Fig. 4): the r_min its layers' inputs are based on are, conv 1 to 7,
    1, 3, 6, 10, 16, 24, 32 (pools 2x2/2 after convs 2, 4, 7 double j to 2, 4, 8), and the third pool's input
    has 32 + 2 * 4 = 40 > 32: it is b_min, just before conv 8, and everything from it on is unproductive.
    Cutting there leaves convs 1-7 with no unproductive layer and a last layer whose r_min is exactly 32,
    the input (fit 1). Cutting under the output rule (before conv 7, whose output is 40) is cheaper but its
    last layer sees 24 of 32. No downsampling change keeps the fit at 1 with fewer parameters: dropping or
    moving a pool slows the growth, so the cut comes later and keeps more layers."""
    assert analysis_of("cifar_vgg16", 32).border_layer_min == "features.23"
    assert first_conv_at_or_after(analysis_of("cifar_vgg16", 32), "features.23") == 8
    result = vgg16_params
    chosen = result.chosen
    assert result.choice.status == "chosen"
    assert [(s.strategy, s.params) for s in chosen.steps] == [
        ("truncate", {"rule": "input", "keep_blocks": 0})
    ]
    assert result.rewrite.plans[0].cut.at == "features.22"
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    params = sum(9 * a * b + b + 2 * b for a, b in widths) + 256 * 10 + 10  # convs with bias, BN, new head
    sizes = [32, 32, 16, 16, 8, 8, 8]
    flops = (
        sum(conv(3, a, b, h) + bn(b, h) for (a, b), h in zip(widths, sizes, strict=True)) + 256 * 8 * 8 + 2560
    )
    assert (chosen.figures.params, chosen.figures.flops) == (params, flops) == (1_740_362, 191_023_616)
    assert chosen.figures.unproductive == 0 and chosen.figures.final_r_min == (32, 32)
    assert chosen.verified and result.model.head.fc.in_features == 256
    by_output = next(c for c in result.candidates if c.label == "truncate(rule=output, keep_blocks=0)")
    assert by_output.figures.final_r_min == (24, 24) and by_output.figures.params < params
    assert "it won because at the same unproductive layers and distance it is the cheapest in params" in (
        result.choice.reason
    )


def resnet18_flops(h0: int, h1: int, h2: int, h3: int, h4: int, classes: int = 10) -> int:
    """torchvision ResNet18 with conv1's output at h0 x h0 and the stages at h1 .. h4."""

    def block(c_in: int, c_out: int, h: int, projection: bool) -> int:
        cost = conv(3, c_in, c_out, h) + bn(c_out, h) + conv(3, c_out, c_out, h) + bn(c_out, h)
        return cost + (conv(1, c_in, c_out, h) + bn(c_out, h) if projection else 0)

    return (
        conv(7, 3, 64, h0) + bn(64, h0) + 2 * block(64, 64, h1, False)
        + block(64, 128, h2, True) + block(128, 128, h2, False)
        + block(128, 256, h3, True) + block(256, 256, h3, False)
        + block(256, 512, h4, True) + block(512, 512, h4, False) + 512 * h4 * h4 + 512 * classes
    )  # fmt: skip


@pytest.fixture(scope="module")
def resnet18():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    # prefer="fit": the optimum worked out below is the fit-first order's, the default before issue 20
    return rewriter.optimize_model(model, input_size=32, name="resnet18", prefer="fit")


@pytest.mark.slow
def test_resnet18_at_32_px_wins_with_no_unproductive_layer(resnet18):
    """ResNet18 at 32 px. Every skip path leaves r_min as it was, so r_min at each block's output is the
    stem's r_s and a block's second conv sees r_s + 2 * j (j: the jump in that block). Baseline: conv1 7x7/2
    gives 7 (j 2), the max-pool 3x3/2 11 (j 4), layer4 works at j 32: layer4.1.conv2 sees 11 + 64 = 75 > 32,
    the one unproductive layer, at 37.12 M FLOPs.

    Downsampling edits alone: dropping one of the five stride-2 sites leaves j 16 in layer4 and r_s 7, 9 or 11,
    so layer4.1.conv2 sees 39, 41 or 43: still unproductive. Two of them must go: the stem's two (what
    remove-stem-downsampling does) give r_s 7 and j 8: 7 + 16 = 23, no unproductive layer, at 32 x 32 maps
    in the stem and layer1: 0.5645 G FLOPs (paper 000 V); cifar-stem's 3x3 conv gives 3 + 16 = 19.

    With truncation: cut where the last kept conv sees at most 32. Truncating the baseline keeps up to
    layer3.0 (layer3.1.conv2 sees 11 + 2 * 16 = 43; layer3.0.conv2 11 + 16 = 27), fit 27/32. Moving layer2's
    downsampling one boundary later (a 2x2/2 max-pool after layer2.1) makes r_min 11 + 1 * 4 = 15 from
    layer3 on, so layer3.0.conv2 sees 15 + 2 * 8 = 31 and layer3.1.conv2 15 + 2 * 16 = 47: truncated after
    layer3.0, the last layer sees 31 of 32, the closest of these; its maps are 16 (conv1), 8 (layer1, layer2)
    and 2 (layer3.0)."""
    assert resnet18_flops(16, 8, 4, 2, 1) == 37_118_464
    assert resnet18_flops(32, 32, 16, 8, 4) == 564_524_032  # 0.5645 GFLOPs
    result = resnet18
    by_label = {c.label: c for c in result.candidates if c.figures is not None}
    stem = by_label["remove-stem-downsampling(mode=strides, count=None)"].figures
    assert (stem.unproductive, stem.final_r_min, stem.flops) == (0, (23, 23), 564_524_032)
    assert by_label["remove-stem-downsampling(mode=cifar-stem, count=None)"].figures.final_r_min == (19, 19)
    for site, r in ((0, 41), (1, 39), (2, 43), (3, 43), (4, 43)):
        drop = by_label[f"reposition-downsampling(site={site}, move=0)"].figures
        assert (drop.unproductive, drop.final_r_min) == (1, (r, r)), site
    assert by_label["truncate(rule=input, keep_blocks=0)"].figures.final_r_min == (27, 27)
    chosen = result.chosen
    assert chosen.figures.unproductive == 0
    assert chosen.label == "reposition-downsampling(site=2, move=1) + truncate(rule=input, keep_blocks=0)"
    head = 256 * 2 * 2 + 256 * 10
    kept = (
        conv(7, 3, 64, 16) + bn(64, 16) + 2 * (2 * conv(3, 64, 64, 8) + 2 * bn(64, 8))
        + conv(3, 64, 128, 8) + conv(3, 128, 128, 8) + conv(1, 64, 128, 8) + 3 * bn(128, 8)
        + 2 * conv(3, 128, 128, 8) + 2 * bn(128, 8)
        + conv(3, 128, 256, 2) + conv(3, 256, 256, 2) + conv(1, 128, 256, 2) + 3 * bn(256, 2)
    )  # fmt: skip
    assert chosen.figures.flops == kept + head == 49_227_264
    assert chosen.figures.final_r_min == (31, 31) and chosen.verified
    assert result.rewrite.report.rows[-1].flops == 49_227_264


def test_cifar_vgg16_cost_first_is_the_fewest_parameters():
    """Cost first (the default), cifar_vgg16 at 32 px by parameters: of the candidates with no unproductive
    layer the cheapest wins. The output rule's cut before conv 7 keeps convs 1-6, whose last one sees 24 of
    32 (productive), with bias and batch norm and a 256 -> 10 head: the fewest parameters of all candidates
    (the next test's closest)."""
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    fewest = sum(9 * a * b + 3 * b for a, b in widths) + 2570
    result = rewriter.optimize_model("cifar_vgg16", input_size=32, objective="params", dry_run=True)
    assert result.chosen.label == "truncate(rule=output, keep_blocks=0)"
    assert result.chosen.figures.params == fewest == 1_149_770 and result.chosen.figures.unproductive == 0
    assert result.alternative.chosen.label == "truncate(rule=input, keep_blocks=0)"  # the fit-first choice


@pytest.mark.slow
def test_resnet18_at_32_px_cost_first_cuts_after_layer1():
    """ResNet18 (10 classes) at 32 px, cost first: the cheapest candidate with no unproductive layer is the
    output rule's cut after layer1 (layer1.1.conv2 sees 11 + 2 * 4 = 19 of 32): conv1 7x7 3 -> 64 at 16 x 16
    with its batch norm, four 3x3 64 -> 64 convs at 8 x 8 with theirs, global pooling over 64 x 8 x 8 and a
    64 -> 10 head; parameters 3 * 64 * 49 + 4 * 64 * 64 * 9 + 5 * 128 (batch norms) + 650."""
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    result = rewriter.optimize_model(model, input_size=32, name="resnet18", dry_run=True)
    flops = conv(7, 3, 64, 16) + bn(64, 16) + 4 * (conv(3, 64, 64, 8) + bn(64, 8)) + 64 * 8 * 8 + 640
    params = 3 * 64 * 49 + 4 * 64 * 64 * 9 + 5 * 128 + 650
    chosen = result.chosen.figures
    assert result.chosen.label == "truncate(rule=output, keep_blocks=0)"
    assert (chosen.flops, chosen.params) == (flops, params) == (11_915_904, 158_154)
    assert chosen.final_r_min == (19, 19) and chosen.unproductive == 0


def test_a_budget_below_every_candidate_names_the_closest(vgg16_params):
    """With a limit of 1000 parameters nothing qualifies; the closest is the one with the fewest: the cut
    under the output rule, before conv 7: convs 1-6 with bias and BN and a 256 -> 10 head."""
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    fewest = sum(9 * a * b + 3 * b for a, b in widths) + 2570
    choice = choose(vgg16_params.candidates, objective="params", budget=Budget(max_params=1000))
    assert choice.status == "over-budget" and choice.chosen is None
    assert choice.closest.figures.params == fewest == 1_149_770
    assert choice.closest.label in choice.reason and "1.15 M params" in choice.reason


def test_the_order_breaks_every_tie_the_same_way(vgg16_params):
    ranked = vgg16_params.choice.ranked
    keys = [rank_key(c, "params", "fit") for c in ranked]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
