"""Ops that move or resize positions are followed (explicit padding, space-to-depth, a row LSTM), each
checked by hand and by the gradient oracle; an op the graph cannot follow is reported, never a silent 1x1."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.analysis import elementwise_rule, register_function_rule

from ..nets import conv
from . import position_nets as nets
from .test_gradient_oracle import measured_receptive_field

INF = math.inf


def fields(model: nn.Module, size: int = 32, **kwargs) -> dict[str, tuple]:
    analysis = rewriter.analyze(model, size, flops=False, **kwargs)
    return {layer.name: (layer.r_out_min, layer.r_out_max) for layer in analysis.layers}


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        (nets.FunctionalPad, {"a": 3, "b": 5, "c": 7}),  # was 3 after the pad: every later op a 1x1
        (nets.PadModules, {"a": 3, "b": 5, "c": 7}),
        (nets.BlurPool, {"a": 3, "conv2d": 5, "c": 9}),  # timm's BlurPool2d: 495 at resnetblur18's last conv
        (nets.SpaceToDepth, {"c1": 12, "c2": 20}),  # TResNet's stem: was 3, the gradient says 12
        (nets.PixelUnshuffled, {"c1": 12, "c2": 20}),
        (nets.DepthwiseAfterSpaceToDepth, {"dw": 9, "pw": 12}),
    ],
)
def test_padding_and_space_to_depth_are_followed(net, expected):
    model = net()
    analysis = rewriter.analyze(model, 32, flops=False)
    got = {name: analysis.layer(name).r_out_max[0] for name in expected}
    assert got == expected
    assert analysis.warnings == ()
    for name, r in expected.items():
        # a functional conv has no module to hook; after space-to-depth, one position of the depthwise
        # conv's map holds 16 pixels in its channels, and the oracle sums over channels: 12 there
        if name not in ("conv2d", "dw"):
            assert measured_receptive_field(model, name, 64) == (r, r), name


def test_an_asymmetric_pad_keeps_both_axes():
    layers = fields(nets.PadModules())
    assert layers["c"] == ((7, 7), (7, 7))


def test_a_row_lstm_mixes_the_whole_row():
    layers = fields(nets.RowLSTM())
    assert layers["rnn"] == ((3, INF), (3, INF))  # it was dropped from the graph: r_max stayed 3
    assert layers["b"] == ((5, INF), (5, INF))


@pytest.mark.parametrize("size", [24, 40])
def test_the_gradient_of_a_row_lstm_spans_its_row_and_three_rows(size):
    """The second method: the input pixels that reach the centre output of ``rnn`` span the whole width (the
    analyzer's unbounded) and three rows (the 3x3 conv before it)."""
    torch.manual_seed(0)
    model = nets.RowLSTM().double().eval()
    x = torch.rand(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    a = model.a(x)
    n, c, h, w = a.shape
    rows, _ = model.rnn(a.permute(0, 2, 3, 1).reshape(n * h, w, c))
    rows.reshape(n, h, w, -1)[0, h // 2, w // 2].sum().backward()
    grad = x.grad[0].abs().sum(0)
    hit_rows = torch.nonzero(grad.sum(1)).flatten()
    hit_cols = torch.nonzero(grad.sum(0)).flatten()
    assert (int(hit_rows.max() - hit_rows.min() + 1), len(hit_cols)) == (3, size)


def test_a_module_returning_a_tuple_keeps_its_branch_with_a_warning():
    analysis = rewriter.analyze(nets.TupleBranch(), 32, flops=False, leaf_modules=["TwoOutputs"])
    assert "b" in analysis.layer_names()  # the conv after the tuple is analyzed
    assert analysis.layer("b").r_out_max == (5, 5)  # the leaf taken as 1x1, and said so:
    assert len(analysis.warnings) == 1
    assert "unknown module TwoOutputs: treated as 1x1" in analysis.warnings[0]
    assert "returns several tensors" in analysis.warnings[0]


def crop_border(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, 1:-1, 1:-1].contiguous()


torch.fx.wrap("crop_border")


class Cropped(nn.Module):
    """conv3 -> a wrapped function that crops the map, registered (wrongly) as element-wise -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(crop_border(self.a(x)))


def test_an_elementwise_rule_that_resizes_the_map_is_reported():
    """Make the class of the padding fault impossible: an op whose rule says element-wise but whose output
    has another number of positions gets a warning naming it."""
    register_function_rule(crop_border)(elementwise_rule)  # the function itself, not its name
    analysis = rewriter.analyze(Cropped(), 32, flops=False)
    assert len(analysis.warnings) == 1
    assert analysis.warnings[0].startswith("'crop_border': its result no longer holds the height and width")
    assert "at 'crop_border'" in analysis.warnings[0]


class Flattened(nn.Module):
    """conv3 -> a custom op registered as element-wise that flattens the map (it loses the axes) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a = conv(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(lose_positions(self.a(x)))


def lose_positions(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


torch.fx.wrap("lose_positions")


def test_an_elementwise_rule_that_drops_the_axes_is_reported():
    register_function_rule(lose_positions)(elementwise_rule)
    analysis = rewriter.analyze(Flattened(), 16, flops=False)
    assert any(
        w.startswith("'lose_positions': its result no longer holds the height and width")
        for w in analysis.warnings
    )
