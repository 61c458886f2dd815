"""Receptive fields and border layers on tiny hazard nets, each value worked out by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

import rewriter
from rewriter.analysis.receptive import _apply, _front, final_run_start
from rewriter.analysis.rules import AxisEffect

from .. import nets

INF = math.inf


def rows(model: torch.nn.Module, size=32, **kwargs) -> dict[str, rewriter.Layer]:
    analysis = rewriter.analyze(model, size, flops=False, **kwargs)
    return {layer.name: layer for layer in analysis.layers}


def test_plain_net_follows_the_recurrence():
    # c1 3x3: 1 -> 3; pool 2/2: 3 -> 4 (j 2); c2: 4 -> 8; c3: 8 -> 12; mean over (H, W) is global.
    layers = rows(nets.Plain())
    assert [layers[n].r_out_min for n in ("c1", "pool", "c2", "c3")] == [(3, 3), (4, 4), (8, 8), (12, 12)]
    assert layers["mean"].r_out_min == (INF, INF)
    assert layers["mean"].productive is None
    assert layers["head"].productive is None


def test_skip_connections_make_r_min_zigzag():
    # stem 3; block 1: 5, 7 (r_min = r_max, one path); block 2's input is stem + block 1: r_min 3, r_max 7;
    # b2c1: r_min 3 + 2 = 5, r_max 9; b2c2: 7, 11.
    layers = rows(nets.Residual())
    assert [layers[n].r_out_min[0] for n in ("stem", "b1c1", "b1c2", "b2c1", "b2c2")] == [3, 5, 7, 5, 7]
    assert [layers[n].r_out_max[0] for n in ("stem", "b1c1", "b1c2", "b2c1", "b2c2")] == [3, 5, 7, 9, 11]


def test_concatenation_takes_min_and_max_over_its_inputs():
    layers = rows(nets.Concat())
    assert layers["out"].r_in_min == (3, 3) and layers["out"].r_in_max == (5, 5)
    assert layers["out"].r_out_min == (5, 5) and layers["out"].r_out_max == (7, 7)


def test_dilation_uses_the_effective_kernel():
    layers = rows(nets.Dilated())
    assert layers["c1"].r_out_min == (7, 7)  # 3 * (3 - 1) + 1
    assert layers["c2"].r_out_min == (13, 13)


def test_asymmetric_kernels_and_strides_are_tracked_per_axis():
    # c1 (1x3, stride 1x2): (1, 3), jumps (1, 2); c2 (3x1): (3, 3); c3 (1x3): width grows by 2 * 2 -> (3, 7).
    layers = rows(nets.Asymmetric())
    assert layers["c1"].r_out_min == (1, 3)
    assert layers["c2"].r_out_min == (3, 3)
    assert layers["c3"].r_out_min == (3, 7)
    assert layers["c1"].output_size == (32, 16)


def test_depthwise_grows_the_field_and_pointwise_does_not():
    layers = rows(nets.Depthwise())
    assert layers["dw"].r_out_min == (5, 5)
    assert layers["pw"].r_out_min == (5, 5)
    assert layers["pw"].productive is None  # a 1x1 conv cannot integrate neighbours: no border verdict


def test_a_module_called_twice_is_two_nodes():
    layers = rows(nets.CalledTwice())
    assert layers["shared"].r_out_min == (5, 5)
    assert layers["shared_1"].r_out_min == (7, 7)


def test_an_unused_module_is_not_in_the_graph():
    analysis = rewriter.analyze(nets.Unused(), 32, flops=False)
    assert analysis.layer_names() == ["used"]
    assert analysis.params == 3 * 4 * 9 + 4 * 4 * 9  # parameters still count


# squeeze-and-excitation and CBAM's spatial gate: test_gates.py


def test_linear_on_channels_last_is_a_1x1_op():
    # stem 4x4/4: 4 (j 4); dw 7x7: 4 + 6 * 4 = 28; the Linears act per position on [N, H, W, C].
    layers = rows(nets.ChannelsLast())
    assert layers["pw1"].r_out_min == (28, 28)
    assert layers["pw2"].r_out_max == (28, 28)
    assert layers["head"].r_out_min == (INF, INF)  # on flattened positions: global


def test_attention_over_tokens_is_global_and_patch_embedding_is_a_conv():
    layers = rows(nets.TinyViT())
    assert layers["patch"].category == "conv"
    assert layers["patch"].r_out_min == (8, 8)
    assert layers["attn"].r_out_min == (INF, INF)
    assert layers["attn"].productive is None
    assert layers["mlp"].r_in_min == (8, 8)  # the residual stream still carries the patch's field
    assert layers["mlp"].r_in_max == (INF, INF)


def test_flatten_then_linear_is_global():
    layers = rows(nets.FlattenHead(), 16)
    assert layers["fc"].r_out_min == (INF, INF)


def test_non_square_inputs_give_per_axis_verdicts():
    # Plain at 32x64 with a feature size of (8, 16): c3's input has r = 8 on both axes. Height: 8 > 8 is
    # false. At 7x64: height exceeds (8 > 7), width does not (8 > 64 false), so c3 stays productive.
    analysis = rewriter.analyze(nets.Plain(), (32, 64), flops=False, feature_size=(7, 64))
    c3 = analysis.layer("c3")
    assert c3.exceeds_input == (True, False)
    assert c3.productive is True
    both = rewriter.analyze(nets.Plain(), (32, 64), flops=False, feature_size=(7, 7)).layer("c3")
    assert both.exceeds_input == (True, True)
    assert both.productive is False


def test_non_square_input_sizes_are_reported_per_axis():
    analysis = rewriter.analyze(nets.Plain(), (32, 64), flops=False)
    assert analysis.layer("pool").output_size == (16, 32)
    assert analysis.input_size == (32, 64)


def test_border_is_the_start_of_the_final_unproductive_run():
    assert final_run_start([("a", True), ("b", False), ("c", True), ("d", False), ("e", False)]) == "d"
    assert final_run_start([("a", True), ("b", False), ("c", True)]) is None
    assert final_run_start([("a", False), ("b", False)]) == "a"


def test_zigzag_dips_before_the_border_stay_productive():
    # Residual at feature size 6 (input rule): b1c2 has r_in 5 (ok), b2c1 r_in 3 (ok), b2c2 r_in 5 (ok)...
    # at feature size 4: b1c2 (5 > 4) fails, b2c1 (3) passes, b2c2 (5 > 4) fails: the final run is b2c2 alone,
    # and b1c2, which fails the test but lies before a productive layer, is not unproductive.
    analysis = rewriter.analyze(nets.Residual(), 32, flops=False, feature_size=4)
    assert analysis.border_layer_min == "b2c2"
    assert analysis.layer("b1c2").exceeds_input == (True, True)
    assert analysis.layer("b1c2").productive is True
    assert [layer.name for layer in analysis.unproductive_layers] == ["b2c2"]


def test_output_rule_tests_the_layers_own_field():
    # Plain with feature size 8: input rule: c3 has r_in 8 (not > 8): no border. Output rule: c2 gives 8 (ok),
    # c3 gives 12 > 8: border c3.
    assert rewriter.analyze(nets.Plain(), 32, flops=False, feature_size=8).border_layer_min is None
    output = rewriter.analyze(nets.Plain(), 32, flops=False, feature_size=8, border_rule="output")
    assert output.border_layer_min == "c3"


def test_smallest_productive_input_is_the_largest_tested_r_min():
    # Plain: tested r_in of c1, pool, c2, c3 are 1, 3, 4, 8: at 8 px every layer is productive.
    analysis = rewriter.analyze(nets.Plain(), 32, flops=False)
    assert analysis.min_productive_input_size == (8, 8)


def test_pareto_front_keeps_paths_whose_jump_makes_them_smaller_later():
    # Two paths: (r, j) = (10, 1) and (8, 4). Keeping only the smaller r (8) would predict 8 + 4*4 = 24 after a
    # 5x5 conv; the true r_min is 10 + 4*1 = 14. The front keeps both, so the result is exact.
    states = _front([(10, Fraction(1)), (8, Fraction(4)), (12, Fraction(4))])
    assert set(states) == {(10, 1), (8, 4), (12, 4)}  # (12, 4) is the r_max candidate
    after = _apply(AxisEffect(5, Fraction(1)), states)
    assert min(r for r, _ in after) == 14
    assert max(r for r, _ in after) == 28


def test_unknown_ops_are_reported_with_the_assumption():
    analysis = rewriter.analyze(nets.UnknownOp(), 32, flops=False)
    assert analysis.warnings == (
        "unknown op 'cumsum': treated as 1x1, stride 1 (no receptive-field growth); at 'cumsum'",
    )
    assert analysis.layer("c2").r_in_min == (3, 3)


def test_untraceable_modules_fail_with_the_module_and_the_remedy():
    with pytest.raises(
        rewriter.TraceError, match=r"module 'block' \(DataDependent\).*add DataDependent to leaf_modules"
    ):
        rewriter.analyze(nets.Untraceable(), 32, flops=False)


def test_a_leaf_module_is_opaque_and_its_assumption_reported():
    analysis = rewriter.analyze(nets.Untraceable(), 32, flops=False, leaf_modules=["DataDependent"])
    assert analysis.warnings == (
        "unknown module DataDependent: treated as 1x1, stride 1 (no receptive-field growth); at 'block'",
    )


def test_an_unknown_leaf_module_name_lists_close_matches():
    with pytest.raises(rewriter.AnalysisError, match="did you mean 'DataDependent'"):
        rewriter.analyze(nets.Untraceable(), 32, flops=False, leaf_modules=["DataDependend"])


def test_analysis_does_not_change_the_model():
    model = nets.Residual().train()
    model.b1c1.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rewriter.analyze(model, 32)
    assert model.training and not model.b1c1.training and model.b1c2.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_wide_input_moves_the_border_where_only_height_is_exceeded(analysis_of):
    # torchvision VGG16 (no BN): convs at features 0 2 5 7 10 12 14 17 19 21 ..., pools at 4 9 16 23 30.
    # r_in: pool 16: 40; conv 17: 44; conv 19: 60; conv 21: 76. At 32x32 the pool (40 > 32) is b_min. At
    # 32x64 the width is only exceeded from r = 76 > 64 on: b_min moves to conv 21 (conv 10).
    square = analysis_of("vgg16", 32)
    wide = analysis_of("vgg16", (32, 64))
    assert square.border_layer_min == "features.16"
    assert wide.layer("features.16").exceeds_input == (True, False)
    assert wide.layer("features.19").exceeds_input == (True, False)
    assert wide.border_layer_min == "features.21"


def test_positions_flattened_and_viewed_back_keep_their_axes():
    layers = rows(nets.SplitBack())
    assert layers["wide"].r_out_min == (3, 9)
    assert layers["tall"].r_out_min == (9, 9)
    assert layers["tall"].output_size == (32, 32)
    assert layers["tall"].productive is True


def test_a_linear_over_patch_pixels_is_a_patch_sized_kernel():
    layers = rows(nets.Patchify())
    assert layers["embed"].r_out_min == (4, 4)  # not global: it reads one 4x4 patch
    assert layers["mix"].r_out_min == (12, 12)  # 4 + (3 - 1) * 4: the patches are 4 px apart
    assert layers["mix"].output_size == (8, 8)


def test_attention_inside_windows_is_a_window_sized_kernel():
    analysis = rewriter.analyze(nets.WindowAttention(), 32, flops=False)
    product = analysis.layer("matmul_1")  # softmax(q k^T) @ v combines the 16 positions of a window
    assert product.r_in_min == (3, 3) and product.r_out_min == (6, 6) and product.r_out_max == (6, 6)
    assert analysis.warnings == ()


def test_a_slice_of_a_split_keeps_its_positions():
    layers = rows(nets.SplitConcat())
    assert [layers[n].r_out_min[0] for n in ("c1", "c2", "c3")] == [3, 5, 7]


def test_pooling_with_a_kernel_computed_from_a_shape_is_read_at_the_target_size():
    analysis = rewriter.analyze(nets.FunctionalGlobalPool(), 32, flops=False)
    pool = analysis.layer("avg_pool2d")
    assert pool.kernel_size == (32, 32) and pool.r_out_min == (34, 34)
    assert analysis.warnings == ()
