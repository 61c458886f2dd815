"""Attention gates leave the feature path's receptive fields alone (paper 000 IV-D, dissertation 10.1);
a global context that is added back does not. Values by hand, and the oracle of the issue: the same
network with every gate module replaced by ``nn.Identity()`` has the same r_min and r_max, layer by layer
on the feature path."""

from __future__ import annotations

import copy
import math

import pytest
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

import rewriter
from rewriter.models.sources import load_model

from .. import nets
from ..conftest import skip_weight_init
from . import gate_nets

INF = math.inf


def rows(model: nn.Module, size: int = 32) -> dict[str, rewriter.Layer]:
    return {layer.name: layer for layer in rewriter.analyze(model, size, flops=False).layers}


def without(model: nn.Module, classes: tuple[type, ...]) -> nn.Module:
    """A copy of ``model`` with every module of ``classes`` replaced by ``nn.Identity()``."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, classes):
                setattr(parent, name, nn.Identity())
    return model


def fields(analysis: rewriter.Analysis) -> dict[str, tuple]:
    return {
        layer.name: (layer.r_in_min, layer.r_in_max, layer.r_out_min, layer.r_out_max, layer.exceeds)
        for layer in analysis.layers
        if layer.role == "feature"
    }


def assert_gates_change_nothing(model: nn.Module, classes: tuple[type, ...], sizes=(32, 224)) -> None:
    gated, plain = rewriter.trace_model(model), rewriter.trace_model(without(model, classes))
    for size in sizes:
        a, b = gated.analyze(size, flops=False), plain.analyze(size, flops=False)
        assert fields(a) == fields(b), f"at {size} px"
        assert (a.border_layer_min, a.border_layer_max) == (b.border_layer_min, b.border_layer_max)
        assert all(layer.productive is None for layer in a.layers if layer.role == "attention")
        assert any(layer.role == "attention" for layer in a.layers)


def test_squeeze_and_excitation_leaves_both_fields_unchanged():
    # c1: 3. The SE product carries only its feature operand: c2 sees 3 / 3 and gives 5 / 5.
    layers = rows(nets.SqueezeExcite())
    assert (layers["c2"].r_in_min, layers["c2"].r_in_max) == ((3, 3), (3, 3))
    assert (layers["c2"].r_out_min, layers["c2"].r_out_max) == ((5, 5), (5, 5))
    for name in ("squeeze", "fc1", "fc2"):
        assert layers[name].role == "attention" and layers[name].productive is None
    assert layers["c1"].role == layers["c2"].role == "feature"


def test_a_cbam_spatial_gate_is_a_gate_too():
    # The 7x7 gate conv sees 3 and gives 9, a bounded field; by the papers it is attention all the same:
    # c2 sees 3 / 3 (under the old max-over-paths rule: 3 / 9).
    layers = rows(nets.SpatialAttention())
    assert (layers["c2"].r_in_min, layers["c2"].r_in_max) == ((3, 3), (3, 3))
    assert layers["attn"].role == "attention"
    assert layers["attn"].r_out_min == (9, 9)  # its own field is still reported


def test_cbam_resnet_block_by_hand():
    # stem 3; block1 convs 5, 7; both CBAM gates keep 7; + skip (3): 3 / 7. block2.conv1 sees 3 / 7 and
    # gives 5 / 9, conv2 7 / 11; + skip: 3 / 11.
    layers = rows(gate_nets.CBAMResNet())
    assert (layers["block2.conv1"].r_in_min, layers["block2.conv1"].r_in_max) == ((3, 3), (7, 7))
    assert (layers["block2.conv2"].r_out_min, layers["block2.conv2"].r_out_max) == ((7, 7), (11, 11))
    attention = {name for name, layer in layers.items() if layer.role == "attention"}
    assert {"block1.cbam.channel.mlp.1", "block1.cbam.channel.mlp.3", "block1.cbam.spatial.conv"} <= attention
    assert not any(name.startswith(("block1.conv", "block2.conv", "stem")) for name in attention)


def test_cbam_resnet_block_equals_the_block_without_cbam():
    # At 4 px the tail exists: block2.conv2 (r_in_min 5 > 4) is b_min, block1.conv2 (r_in_max 5) b_max.
    model = gate_nets.CBAMResNet()
    assert_gates_change_nothing(model, (gate_nets.CBAM,), sizes=(4, 32))
    analysis = rewriter.analyze(model, 4, flops=False)
    assert (analysis.border_layer_min, analysis.border_layer_max) == ("block2.conv2", "block1.conv2")


def test_eca_is_a_gate():
    layers = rows(gate_nets.Sandwich(gate_nets.ECA()))
    assert (layers["c2"].r_in_min, layers["c2"].r_in_max) == ((3, 3), (3, 3))
    assert layers["addon.conv"].role == "attention"


@pytest.mark.parametrize(
    ("addon", "r_in_max"),
    [
        (gate_nets.GlobalContext(16, fusion="add"), INF),  # context added back: unbounded, as before
        (gate_nets.GlobalContext(16, fusion="mul"), 3),  # GCNet's channel_mul fusion is a gate
        (gate_nets.NonLocal(16), INF),  # attention over all positions, added back
    ],
)
def test_a_global_context_is_a_gate_only_when_it_multiplies(addon, r_in_max):
    layers = rows(gate_nets.Sandwich(addon))
    assert layers["c2"].r_in_min == (3, 3)  # the skip keeps the feature path's 3 either way
    assert layers["c2"].r_in_max == (r_in_max, r_in_max)
    roles = {layer.role for name, layer in layers.items() if name.startswith("addon.")}
    assert roles == ({"attention"} if r_in_max == 3 else {"feature"})


def test_a_product_of_two_feature_paths_is_a_plain_merge():
    # c3 gives 3, c5 gives 5: the product has min 3 and max 5; after adds 2.
    layers = rows(gate_nets.FeatureProduct())
    assert (layers["after"].r_in_min, layers["after"].r_in_max) == ((3, 3), (5, 5))
    assert {layer.role for layer in layers.values()} == {"feature"}


def test_a_weight_not_computed_from_its_feature_is_no_gate():
    # deep = c2(c1(stem)) gives 7; the sigmoid weight comes from the stem (3) through a 1x1 conv: the
    # product is a merge of 7 and 3.
    layers = rows(gate_nets.ForeignGate())
    assert (layers["after"].r_in_min, layers["after"].r_in_max) == ((3, 3), (7, 7))
    assert layers["gate"].role == "feature"


def _built(name: str) -> nn.Module:
    with skip_weight_init():
        return load_model(name)[0]


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf"])
def test_torchvision_se_networks_equal_their_se_free_selves(name):
    assert_gates_change_nothing(_built(name), (SqueezeExcitation,))


def test_efficientnet_b_max_is_no_longer_the_first_layer_after_the_first_se_block():
    # Under the old rule every layer after the first SE product had r_max unbounded: b_max was the first
    # layer after it (features.2.0.block.1.0) at every size.
    analysis = rewriter.analyze(_built("efficientnet_b0"), 224, flops=False)
    assert analysis.border_layer_max not in (None, "features.2.0.block.1.0")
    feature = [layer for layer in analysis.layers if layer.role == "feature" and layer.exceeds is not None]
    assert all(not math.isinf(layer.r_in_max[0]) for layer in feature)


def test_timm_attention_modules():
    layers_mod = pytest.importorskip("timm.layers")
    from timm.layers.cbam import CbamModule

    gates = [
        layers_mod.SqueezeExcite(16),
        layers_mod.EffectiveSEModule(16),
        layers_mod.EcaModule(16),
        CbamModule(16),
        layers_mod.GlobalContext(16),  # timm's default fusion is the scale (a gate)
    ]
    for gate in gates:
        model = gate_nets.Sandwich(gate)
        assert fields(rewriter.analyze(model, 32, flops=False)) == fields(
            rewriter.analyze(gate_nets.Sandwich(nn.Identity()), 32, flops=False)
        ), type(gate).__name__
    added = rows(gate_nets.Sandwich(layers_mod.GlobalContext(16, fuse_add=True, fuse_scale=False)))
    assert added["c2"].r_in_max == (INF, INF)
