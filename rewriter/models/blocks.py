"""Building blocks that rewrites put into models: the truncation's head, and the decomposed kernels of
paper 003. They live here, not in a strategy, so that a model holding them can be built, saved and
loaded like any other."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..analysis.information_field import rolling_windows
from ..analysis.rules import elementwise, register_module_rule


class GapLinearHead(nn.Sequential):
    """Global average pooling, flatten, and one Linear layer (paper 000 Fig. 11's "simple output-head")."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(channels, num_classes)
            )
        )


class Truncated(nn.Module):
    """The kept prefix of a network (``features``) followed by a new ``head``."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class RollingPointwise(nn.Module):
    """Rolling pointwise convolution (RPW, paper 003 Fig. 4): a 1x1 convolution whose filters each read
    ``in_channels / groups`` consecutive input channels; the windows of neighbouring filter groups overlap by
    ``overlap`` of their width and roll around the channel axis.

    The windows start every ``step = window * (1 - overlap)`` channels; the input channels are gathered
    window after window and a grouped 1x1 convolution applies ``out_channels / windows`` filters to each, so
    each filter has ``in_channels / groups`` weights, as the paper's construction implies.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, groups: int = 2, overlap: float = 0.5, bias: bool = True
    ) -> None:
        super().__init__()
        window, step, windows = rolling_windows(in_channels, out_channels, groups=groups, overlap=overlap)
        self.in_channels, self.out_channels, self.groups, self.overlap = (
            in_channels,
            out_channels,
            groups,
            overlap,
        )
        self.window, self.step, self.windows = window, step, windows
        index = [(j * step + i) % in_channels for j in range(windows) for i in range(window)]
        self.register_buffer("index", torch.tensor(index), persistent=False)
        self.conv = nn.Conv2d(windows * window, out_channels, 1, groups=windows, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.index_select(1, self.index))

    def reads(self, channel: int) -> list[int]:
        """The input channels output ``channel`` reads."""
        start = (channel // (self.out_channels // self.windows)) * self.step
        return [(start + i) % self.in_channels for i in range(self.window)]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}, overlap={self.overlap}"


register_module_rule(RollingPointwise)(elementwise)  # per position, like any 1x1 convolution


class FactorizedConv(nn.Sequential):
    """A depthwise k x k convolution, optionally batch norm and ReLU, then a (group/rolling) pointwise one."""


def factorized_conv(conv: nn.Conv2d, kind: str, *, groups: int, overlap: float, norm: bool) -> FactorizedConv:
    """``conv`` as a depthwise conv of its kernel and a pointwise (``dw-pw``), group pointwise (``dw-gpw``)
    or rolling pointwise (``dw-rpw``) conv, with fresh weights, on ``conv``'s device and dtype."""
    parts: OrderedDict[str, nn.Module] = OrderedDict(
        dw=nn.Conv2d(conv.in_channels, conv.in_channels, conv.kernel_size, 1, conv.padding, conv.dilation,
                     groups=conv.in_channels, bias=False, padding_mode=conv.padding_mode),
    )  # fmt: skip
    if norm:
        parts["bn"] = nn.BatchNorm2d(conv.in_channels)
        parts["act"] = nn.ReLU(inplace=True)
    parts["pw"] = pointwise_conv(
        kind, conv.in_channels, conv.out_channels, groups=groups, overlap=overlap, bias=conv.bias is not None
    )
    return FactorizedConv(parts).to(conv.weight)


def pointwise_conv(kind: str, cin: int, cout: int, *, groups: int, overlap: float, bias: bool) -> nn.Module:
    """The pointwise part of a decomposed kernel.

    Raises:
        ValueError: the channels do not divide into the groups or windows.
    """
    if kind == "dw-pw":
        return nn.Conv2d(cin, cout, 1, bias=bias)
    if kind == "dw-gpw":
        if cin % groups or cout % groups:
            raise ValueError(f"{cin} -> {cout} channels are not divisible into {groups} groups")
        return nn.Conv2d(cin, cout, 1, groups=groups, bias=bias)
    return RollingPointwise(cin, cout, groups=groups, overlap=overlap, bias=bias)
