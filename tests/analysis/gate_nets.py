"""Attention add-ons written after their papers, in tiny nets: gates (SE, ECA, CBAM, GCNet's channel_mul)
and global contexts that are added back (GCNet's channel_add, a non-local block)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import conv


class ChannelGate(nn.Module):
    """CBAM's channel attention (Woo et al. 2018, their code): a shared MLP on the average- and max-pooled
    vectors, sigmoid, broadcast over positions with ``unsqueeze`` and ``expand_as``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = channels // reduction
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        scale = torch.sigmoid(avg + mx).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class SpatialGate(nn.Module):
    """CBAM's spatial attention: channel max and mean per position, a 7x7 conv, BN, sigmoid, multiply."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = conv(2, 1, 7), nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channel, self.spatial = ChannelGate(channels), SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class CBAMBlock(nn.Module):
    """A ResNet basic block with CBAM before the addition (Woo et al. 2018, Fig. 3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(channels, channels), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = conv(channels, channels), nn.BatchNorm2d(channels)
        self.cbam = CBAM(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.cbam(self.bn2(self.conv2(out)))
        return torch.relu(out + x)


class CBAMResNet(nn.Module):
    """stem 3x3 -> two CBAM blocks -> global pool -> Linear."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = conv(3, channels)
        self.block1, self.block2 = CBAMBlock(channels), CBAMBlock(channels)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class ECA(nn.Module):
    """ECA (Wang et al. 2020): global average pool, a 1-D conv across channels, sigmoid, ``expand_as``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


class GlobalContext(nn.Module):
    """GCNet's context block (Cao et al. 2019): attention pooling (a 1x1 conv, softmax over positions, a
    matmul), a bottleneck transform, then ``x + term`` (``fusion="add"``, the paper's default) or
    ``x * sigmoid(term)`` (``fusion="mul"``)."""

    def __init__(self, channels: int, fusion: str = "add") -> None:
        super().__init__()
        self.fusion = fusion
        self.mask = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, channels // 4, 1), nn.LayerNorm([channels // 4, 1, 1]), nn.ReLU(),
            nn.Conv2d(channels // 4, channels, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        weights = torch.softmax(self.mask(x).view(n, 1, h * w), dim=2).unsqueeze(-1)
        context = torch.matmul(x.view(n, c, h * w).unsqueeze(1), weights).view(n, c, 1, 1)
        term = self.transform(context)
        return x * torch.sigmoid(term) if self.fusion == "mul" else x + term


class NonLocal(nn.Module):
    """A non-local block (Wang et al. 2018, embedded Gaussian): softmax(theta^T phi) g, a 1x1 conv, added."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = channels // 2
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)
        phi, g = self.phi(x).flatten(2), self.g(x).flatten(2).transpose(1, 2)
        y = torch.softmax(theta @ phi, dim=-1) @ g
        return x + self.out(y.transpose(1, 2).reshape(n, -1, h, w))


class Sandwich(nn.Module):
    """conv 3x3 -> add-on -> conv 3x3 -> global pool -> Linear: the add-on between two convs."""

    def __init__(self, addon: nn.Module, channels: int = 16) -> None:
        super().__init__()
        self.c1, self.addon, self.c2 = conv(3, channels), addon, conv(channels, channels)
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c2(self.addon(self.c1(x))).mean((2, 3)))


class FeatureProduct(nn.Module):
    """Two conv paths multiplied (bilinear-style): no gate, a plain merge. c3: r 3; c5: r 5."""

    def __init__(self) -> None:
        super().__init__()
        self.c3, self.c5, self.after = conv(3, 8), conv(3, 8, 5), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.c3(x) * self.c5(x))


class ForeignGate(nn.Module):
    """A sigmoid weight computed from the stem, not from the feature it multiplies: no gate by rule 1.
    stem: r 3; deep = c2(c1(stem)): 5, 7; gate = sigmoid(1x1 conv of the stem): 3."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.c1, self.c2 = conv(3, 8), conv(8, 8), conv(8, 8)
        self.gate, self.after = nn.Conv2d(8, 8, 1), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.after(self.c2(self.c1(x)) * torch.sigmoid(self.gate(x)))
