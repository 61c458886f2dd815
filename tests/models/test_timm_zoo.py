"""timm's zoo (issue 15): the smallest variant of every family at 64 and 224 px is analyzed, or refused with
a one-line reason naming the op or module; never a crash, never a silent wrong number. The pure CNNs'
final-conv r_max equals the gradient oracle's. Models are built on the meta device (no weights)."""

from __future__ import annotations

import math

import pytest

import rewriter

from .timm_zoo import FAMILIES, PURE_CNNS, build, check_refusal, final_conv, gradient_extent

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.slow


def _analyses(name: str) -> dict[int, rewriter.Analysis | str]:
    """The analysis (or the refusal's message) at 64 and at 224 px."""
    out: dict[int, rewriter.Analysis | str] = {}
    for size in (64, 224):
        model = build(name, size)
        try:
            out[size] = rewriter.analyze(model, size, flops=False, name=name)
        except rewriter.RewriterError as err:
            out[size] = check_refusal(err)
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_timm_family_is_analyzed_or_refused_with_a_reason(family):
    name = FAMILIES[family]
    for size, result in _analyses(name).items():
        if isinstance(result, str):
            continue  # refused: one line naming the op or module (checked in _analyses)
        assert result.layers, f"{name} at {size}: no layer"
        # every warning says where it applies: an assumption is never silent
        assert all(" at '" in warning for warning in result.warnings), result.warnings
        # a classifier's scores depend on the whole image: a finite field at the output is a number the
        # analysis lost track of, which only an op reported under warnings may cause
        if not result.warnings:
            assert all(math.isinf(r) for r in result.fields["output"].input.max), f"{name} at {size}"


def test_the_sweep_covers_at_least_60_families():
    assert len({name for name in FAMILIES.values()}) >= 60
    assert set(PURE_CNNS) <= set(FAMILIES.values())


@pytest.mark.parametrize("name", PURE_CNNS)
def test_the_final_conv_r_max_of_a_pure_cnn_equals_the_gradient_oracle(name):
    model = build(name, 224, meta=False)  # Inception does not run at 64
    analysis = rewriter.analyze(model, 224, flops=False, name=name)
    layer = final_conv(analysis)
    expected = tuple(int(r) for r in layer.r_out_max)
    assert gradient_extent(model, layer.name, max(expected) + 64) == expected, layer.name


def test_tresnets_space_to_depth_stem_is_followed():
    """TResNet's stem moves 4x4 blocks into the channels by view/permute/view: its first 3x3 conv sees 12
    pixels (it was taken as identity: 3), by the analyzer and by the gradient."""
    model = build("tresnet_m", 224, meta=False)
    analysis = rewriter.analyze(model, 224, flops=False)
    assert analysis.layer("body.conv1.conv").r_out_max == (12, 12)
    assert gradient_extent(model, "body.conv1.conv", 128) == (12, 12)


def test_sequencers_lstms_make_the_field_unbounded():
    """Sequencer2D mixes columns and rows with two LSTMs and concatenates them: unbounded along the height
    after the first, along the width after the second, both after the concatenation (r_max; r_min follows
    the residual shortcut). Its tuple results dropped the branch: r_max was 14 at the end of the network."""
    model = build("sequencer2d_s", 64)
    analysis = rewriter.analyze(model, 64, flops=False)
    mixer = "stages.0.blocks.0.rnn_tokens"
    assert analysis.layer(f"{mixer}.rnn_v").category == "recurrent"
    assert analysis.layer(f"{mixer}.rnn_v").r_out_max == (math.inf, 7)  # after the 7x7 patch stem
    assert analysis.layer(f"{mixer}.rnn_h").r_out_max == (7, math.inf)
    assert analysis.layer(f"{mixer}.fc").r_out_max == (math.inf, math.inf)
    assert analysis.layer(f"{mixer}.fc").r_out_min == (7, 7)
    assert analysis.warnings == ()
