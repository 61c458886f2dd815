"""Rules the other tests do not reach, each on a tiny net whose receptive fields are worked out by hand
(r_out = r_in + (k - 1) * jump, jump *= stride; a 3x3 conv of stride 1 adds 2 at jump 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import rewriter

from ..nets import conv


def fields(model: nn.Module, size: int = 8) -> dict[str, rewriter.Layer]:
    analysis = rewriter.analyze(model, size, flops=False)
    assert analysis.warnings == ()  # every op below has a rule: nothing is assumed
    return {layer.name: layer for layer in analysis.layers}


class LpPooled(nn.Module):
    """conv3 -> LPPool2d(k 3, s 2) -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.pool, self.b = conv(3, 4), nn.LPPool2d(2, 3, stride=2), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.pool(self.a(x)))


def test_lp_pooling_is_a_window_with_its_stride():
    # a: 3 (jump 1); pool: 3 + 2 * 1 = 5, jump 2; b: 5 + 2 * 2 = 9
    layers = fields(LpPooled(), 16)
    assert [layers[n].r_out_min for n in ("a", "pool", "b")] == [(3, 3), (5, 5), (9, 9)]
    assert layers["pool"].output_size == (7, 7)  # (16 - 3) // 2 + 1


class Unshuffled(nn.Module):
    """conv3 -> pixel_unshuffle(2): each 2x2 block becomes 4 channels of one position -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(F.pixel_unshuffle(self.a(x), 2))


def test_pixel_unshuffle_gathers_a_2x2_block_per_position():
    # a: 3; unshuffle: a 2x2 window of stride 2: 3 + 1 = 4, jump 2; b: 4 + 2 * 2 = 8 (three positions of the
    # unshuffled map are six pixels, and a's own 3x3 adds 2)
    layers = fields(Unshuffled())
    assert layers["b"].r_out_min == (8, 8) and layers["b"].output_size == (4, 4)


class StackedBranches(nn.Module):
    """conv3 and conv5 of the input, stacked on a new dim, unbound again and added -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.c3, self.c5, self.out = conv(3, 4), conv(3, 4, 5), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.unbind(torch.stack([self.c3(x), self.c5(x)], 0), 0)
        return self.out(first + second)


def test_stack_and_unbind_keep_each_branchs_field():
    # the sum reads a 3 and a 5 branch: r_min 3, r_max 5; out adds 2 to each
    layers = fields(StackedBranches())
    assert (layers["out"].r_in_min, layers["out"].r_in_max) == ((3, 3), (5, 5))
    assert (layers["out"].r_out_min, layers["out"].r_out_max) == ((5, 5), (7, 7))


class ChannelsLastLinear(nn.Module):
    """conv3 -> channels moved last -> F.linear over channels -> moved back -> softmax over channels -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(4, 4)
        self.weight = nn.Parameter(torch.randn(4, 4))
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self.a(x).movedim(1, -1), self.weight).movedim(-1, 1)
        return self.b(self.softmax(y))


def test_a_linear_over_moved_channels_and_a_softmax_over_channels_are_1x1():
    # a: 3; linear, softmax: 1x1 (they combine channels of one position); b: 3 + 2 = 5
    layers = fields(ChannelsLastLinear())
    assert layers["b"].r_out_min == (5, 5)


class Narrowed(nn.Module):
    """conv3 -> the left half of the columns (narrow) -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.b(y.narrow(3, 0, y.shape[3] // 2))


def test_narrow_crops_positions_without_growing_the_field():
    # a crop moves no window: b reads 3 + 2 = 5 pixels per axis, on an 8 x 4 map
    layers = fields(Narrowed())
    assert layers["b"].r_out_min == (5, 5) and layers["b"].output_size == (8, 4)


class FlattenedAndBack(nn.Module):
    """conv3 -> Flatten(2) [N, C, H*W] -> Unflatten(2, (8, 8)) -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(4, 4)
        self.flat, self.unflat = nn.Flatten(2), nn.Unflatten(2, (8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.unflat(self.flat(self.a(x))))


def test_unflatten_restores_the_positions_flatten_joined():
    layers = fields(FlattenedAndBack())
    assert layers["b"].r_out_min == (5, 5) and layers["b"].output_size == (8, 8)


class TokenAttention(nn.Module):
    """conv3 -> tokens [N, H*W, C] -> scaled dot-product self-attention -> back to a map -> conv3."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 4), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        n, c, h, w = y.shape
        tokens = y.flatten(2).transpose(1, 2)
        mixed = F.scaled_dot_product_attention(tokens, tokens, tokens)
        return self.b(mixed.transpose(1, 2).reshape(n, c, h, w))


def test_attention_over_every_position_is_global():
    # every token attends to every other: the whole image, on both axes
    layers = fields(TokenAttention())
    assert layers["b"].r_in_min == (math.inf, math.inf)
