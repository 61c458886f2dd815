"""MobileNet v1 for 32x32 inputs, as trained in paper 003 (Table 3: 3.22 M params)."""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model

# A width is a stride-1 block, a (width, stride) pair a downsampling block.
CFG: list[int | tuple[int, int]] = [
    64,
    (128, 2),
    128,
    (256, 2),
    256,
    (512, 2),
    512,
    512,
    512,
    512,
    512,
    (1024, 2),
    1024,
]


class DepthwiseSeparable(nn.Module):
    """A 3x3 depthwise convolution then a 1x1 pointwise convolution, each with BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size=3, stride=stride, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))


class CifarMobileNet(nn.Module):
    """MobileNet v1: a 3x3 stem with 32 filters, 13 depthwise-separable blocks, GAP, one Linear."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        blocks = []
        channels = 32
        for item in CFG:
            width, stride = item if isinstance(item, tuple) else (item, 1)
            blocks.append(DepthwiseSeparable(channels, width, stride))
            channels = width
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.linear(torch.flatten(self.avgpool(x), 1))


@register_model
def cifar_mobilenet(*, num_classes: int = 10, in_channels: int = 3) -> CifarMobileNet:
    """MobileNet v1 for 32x32 inputs (paper 003 Table 3: 3.22 M params, 50 MFLOPs)."""
    return CifarMobileNet(num_classes=num_classes, in_channels=in_channels)
