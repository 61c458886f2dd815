"""The extension point for a layer of one's own (``rewriter.register_layer``): its receptive-field rule,
channel action and FLOP formula registered together; tables keyed by the callable, a second registration
refused unless replaced."""

from __future__ import annotations

import pytest
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.analysis import elementwise_rule, sliding_window_rule


class ThirdPartyBlur(nn.Module):
    """A library's 5x5 box blur with stride 2, per channel (the analysis has never heard of it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 5, stride=2, padding=2)


def blur_flops(module: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    """The library's own convention: 25 additions and one division per output value."""
    return out.numel() * 26


rewriter.register_layer(
    ThirdPartyBlur, rule=sliding_window_rule(5, 2, category="pool"), channels="keep", flops=blur_flops
)


def test_a_registered_third_party_layer_is_analyzed_and_counted():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ThirdPartyBlur(), nn.Conv2d(4, 4, 3, padding=1))
    analysis = rewriter.analyze(model, 16)
    layers = {layer.name: layer for layer in analysis.layers}
    # conv 3x3: r 3, jump 1; blur 5x5 stride 2: r = 3 + 4 * 1 = 7, jump 2; conv 3x3: r = 7 + 2 * 2 = 11
    assert [layers[n].r_out_min for n in ("0", "1", "2")] == [(3, 3), (7, 7), (11, 11)]
    assert layers["1"].type == "ThirdPartyBlur" and layers["1"].output_size == (8, 8)
    assert analysis.warnings == ()
    # conv: 4*16*16 outputs x 3*9 MACs = 27648; blur: 4*8*8 outputs x 26 = 6656; conv: 4*8*8 x 4*9 = 9216
    assert dict(analysis.flops_by_operator)["ThirdPartyBlur"] == 6656
    assert analysis.flops == 27648 + 6656 + 9216


def test_a_second_registration_is_refused_unless_replaced():
    with pytest.raises(ValueError, match=r"ThirdPartyBlur has a FLOP formula already; pass replace=True"):
        rewriter.register_layer(ThirdPartyBlur, rule=sliding_window_rule(3, 1), flops=blur_flops)
    with pytest.raises(ValueError, match=r"ThirdPartyBlur has a receptive-field rule already .*replace=True"):
        rewriter.register_layer(ThirdPartyBlur, rule=sliding_window_rule(3, 1))
    with pytest.raises(ValueError, match=r"'cat' has a receptive-field rule already"):
        rewriter.register_function_rule("cat")(elementwise_rule)
    rewriter.register_layer(
        ThirdPartyBlur, rule=sliding_window_rule(5, 2, category="pool"), channels="keep", flops=blur_flops,
        replace=True,
    )  # fmt: skip


def linear(x: torch.Tensor) -> torch.Tensor:
    """A function of one's own that happens to be called ``linear``: it shifts the map one column."""
    return torch.roll(x, 1, dims=-1)


torch.fx.wrap("linear")


class OwnLinear(nn.Module):
    """conv 3x3, then the function above (a call fx records, named like torch's linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self.conv(x))


def test_a_function_of_ones_own_is_not_taken_for_torchs_namesake():
    analysis = rewriter.analyze(OwnLinear(), 8)
    assert [w.split(":")[0] for w in analysis.warnings] == ["unknown op 'linear'"]  # not torch's linear rule
    assert "linear" not in dict(analysis.flops_by_operator)  # nor fvcore's linear formula (it would fail)
