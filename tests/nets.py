"""Tiny purpose-built networks, one per hazard the analyzer must get right."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(
    cin: int, cout: int, k: int | tuple[int, int] = 3, s: int | tuple[int, int] = 1, d: int = 1
) -> nn.Conv2d:
    kh, kw = (k, k) if isinstance(k, int) else k
    return nn.Conv2d(
        cin, cout, (kh, kw), s, padding=(d * (kh - 1) // 2, d * (kw - 1) // 2), dilation=d, bias=False
    )


def widening(num_classes: int = 10) -> nn.Module:
    """conv 3->4 -> conv 4->8 -> global pool -> Linear: no layer keeps its input's shape (nothing to skip)."""
    return nn.Sequential(
        conv(3, 4), nn.ReLU(), conv(4, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes)
    )


class Plain(nn.Module):
    """conv3 -> pool2/2 -> conv3 -> conv3: r = 3, 4, 8, 12 (jumps 1, 2, 2, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.pool, self.c2, self.c3 = conv(3, 4), nn.MaxPool2d(2), conv(4, 4), conv(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c3(self.c2(self.pool(self.c1(x))))
        return self.head(x.mean((2, 3)))


class Residual(nn.Module):
    """A stem conv and two residual blocks of two 3x3 convs with identity skips (r_min zig-zags)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8)
        self.b1c1, self.b1c2 = conv(8, 8), conv(8, 8)
        self.b2c1, self.b2c2 = conv(8, 8), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.b1c2(torch.relu(self.b1c1(x)))
        return x + self.b2c2(torch.relu(self.b2c1(x)))


class Concat(nn.Module):
    """Two branches (3x3 and 5x5) concatenated, then a 3x3 conv: r_min over branches = 3, r_max = 5."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = conv(3, 4, 3), conv(3, 4, 5), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.a(x), self.b(x)], dim=1))


class DenseBlock(nn.Module):
    """A DenseNet-style block: each layer sees the concatenation of all earlier feature maps."""

    def __init__(self, layers: int = 3, growth: int = 4) -> None:
        super().__init__()
        self.stem = conv(3, growth)
        self.layers = nn.ModuleList(conv(growth * (i + 1), growth) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Dilated(nn.Module):
    """Two 3x3 convs with dilation 3 (effective kernel 7): r = 7, 13."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = conv(3, 4, d=3), conv(4, 4, d=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.c1(x))


class Asymmetric(nn.Module):
    """A 1x3 conv with stride (1, 2), then a 3x1 conv: r = (1, 3) then (3, 3); jumps (1, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 4, (1, 3), (1, 2))
        self.c2 = conv(4, 4, (3, 1))
        self.c3 = conv(4, 4, (1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(self.c2(self.c1(x)))


class Depthwise(nn.Module):
    """A depthwise 3x3 (groups = channels) then a pointwise 1x1, MobileNet style."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pw = nn.Conv2d(8, 16, 1, bias=False)
        self.stem = conv(3, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(self.stem(x)))


class CalledTwice(nn.Module):
    """The same 3x3 conv applied twice: two nodes, ``shared`` and ``shared_1``, r = 3 then 5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 4)
        self.shared = conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.shared(self.stem(x)))


class Unused(nn.Module):
    """A module that is never called in forward: it owns parameters but is not in the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.used = conv(3, 4)
        self.unused = conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


class SqueezeExcite(nn.Module):
    """conv -> SE (global pool, two 1x1 convs, sigmoid, multiply) -> conv.

    The product mixes global information in, but its r_min is still the feature path's (paper 000 IV-D).
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 8)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(8, 2, 1), nn.Conv2d(2, 8, 1)
        self.c2 = conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(self.squeeze(x)))))
        return self.c2(x * scale)


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: channel mean and max, a 7x7 conv, sigmoid, multiply; then a 3x3 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 8)
        self.attn = conv(2, 1, 7)
        self.c2 = conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.c2(x * torch.sigmoid(self.attn(pooled)))


class ChannelsLast(nn.Module):
    """ConvNeXt-like: a 7x7 depthwise conv, then Linear layers on [N, H, W, C] (per position, 1x1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 8, 4, 4)
        self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
        self.norm = nn.LayerNorm(8)
        self.pw1, self.pw2 = nn.Linear(8, 32), nn.Linear(32, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + y
        return self.head(torch.flatten(x, 1)[:, :8])


class TinyViT(nn.Module):
    """A patch-embedding conv, tokens [N, L, C], a class token, one attention layer, MLP, head on the token."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.mlp = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        x = x + self.mlp(x)
        return self.head(x[:, 0])


class FlattenHead(nn.Module):
    """conv -> pool -> flatten -> Linear over the flattened positions (global, head fixed to 16x16 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.c1(x)), 1))


class Untraceable(nn.Module):
    """A block whose forward branches on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 4)
        self.block = DataDependent()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.stem(x))


class DataDependent(nn.Module):
    """Branches on ``x.sum() > 0``: not traceable, so it must be made a leaf (then treated as opaque)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.conv(x)
        return x


class UnknownOp(nn.Module):
    """Uses ``torch.cumsum`` over the width, an op the analyzer has no rule for."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 4)
        self.c2 = conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.cumsum(self.c1(x), dim=3))


def build(width: int = 4, depth: int = 2) -> nn.Module:
    """A factory for import-spec tests: ``depth`` 3x3 convs of ``width`` channels."""
    layers: list[nn.Module] = [conv(3, width)]
    layers += [conv(width, width) for _ in range(depth - 1)]
    return nn.Sequential(*layers)


class SplitBack(nn.Module):
    """A non-local style round trip: conv, flatten the positions, view them back, then 1x7 and 7x1 convs.

    r: 3 after the 3x3 conv; the 1x7 conv grows only the width: (3, 9); the 7x1 conv the height: (9, 9).
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 4)
        self.wide = conv(4, 4, (1, 7))
        self.tall = conv(4, 4, (7, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # [N, H*W, C]
        x = tokens.transpose(1, 2).reshape(n, c, h, w)
        return self.tall(self.wide(x))


class Patchify(nn.Module):
    """MLP-Mixer style patch embedding by reshape: 4x4 patches flattened into a Linear, then a 3x3 conv.

    The Linear reads the 4x4 pixels of a patch: a 4x4 kernel with stride 4 (r 4, jump 4); the conv on the
    16x16 map of patches adds (3 - 1) * 4: r 12.
    """

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(3 * 16, dim)
        self.mix = conv(dim, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        patches = (
            x.view(n, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 4) * (w // 4), -1)
        )
        tokens = self.embed(patches)  # [N, H/4 * W/4, D]
        grid = tokens.transpose(1, 2).reshape(n, self.dim, h // 4, w // 4)
        return self.mix(grid)


class WindowAttention(nn.Module):
    """Attention inside non-overlapping 4x4 windows (Swin/MaxViT style) after a 3x3 conv.

    Each output position mixes the 16 positions of its window: a 4x4 window after r 3 gives r 3 + 3 = 6.
    """

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.c1 = conv(3, dim)
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        n, c, h, w = x.shape
        windows = x.view(n, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(n, -1, 16, c)
        q, k, v = self.qkv(windows).chunk(3, dim=-1)
        attended = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v  # [N, windows, 16, C]
        out = attended.view(n, h // 4, w // 4, 4, 4, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
        return out


class SplitConcat(nn.Module):
    """Res2Net/GhostNet style: split the channels, drop one group, concatenate the rest, then two 3x3 convs."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 16)
        self.c2 = conv(8, 8)
        self.c3 = conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        x = torch.cat(torch.split(x, 4, 1)[2:], 1)
        return self.c3(self.c2(x))


class FunctionalGlobalPool(nn.Module):
    """Global pooling written as ``F.avg_pool2d(x, x.size(3))``, common in CIFAR code (kernel from a shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = conv(3, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        x = F.avg_pool2d(x, x.size(3))
        return self.fc(x.view(x.size(0), -1))


class LeafSandwich(nn.Module):
    """A stem conv, an untraceable block (to be made a leaf), then two 3x3 convs.

    With the block taken as 1x1: c2 reads r 3, c3 reads r 5. At a feature size of 2, c2 and c3 are the final
    unproductive run, and the cut goes after the block, which must keep its own conv.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv(3, 4)
        self.block = DataDependent()
        self.c2, self.c3 = conv(4, 4), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(self.c2(self.block(self.stem(x))))


def dies(num_classes: int = 10) -> nn.Module:
    """A model builder whose process ends at once, as a worker killed for memory would."""
    import os

    os._exit(3)


def tiny_cnn(num_classes: int = 10, width: int = 8) -> nn.Module:
    """Six 3x3 convs (the first three with stride 2) with batch norm, global pooling and a Linear head: a
    classifier that trains in a second. At 32 px the sixth conv's input field (47) exceeds the image, so
    ``truncate`` cuts before it."""
    layers: list[nn.Module] = []
    for i, stride in enumerate((2, 2, 2, 1, 1, 1)):
        layers += [conv(3 if i == 0 else width, width, s=stride), nn.BatchNorm2d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def sleeps(num_classes: int = 10) -> nn.Module:
    """A model builder that records its process id in $REWRITER_TEST_PIDS and then sleeps for a minute:
    a study worker busy with a cell, for the tests that kill the study."""
    import os
    import time
    from pathlib import Path

    folder = Path(os.environ["REWRITER_TEST_PIDS"])
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return tiny_cnn(num_classes)


def cannot_learn(num_classes: int = 10) -> nn.Module:
    """``tiny_cnn`` with every conv weight zero and frozen: every image gives the same features, so the head
    can learn the class prior at most, and the test accuracy stays at chance or below."""
    model = tiny_cnn(num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
            module.weight.requires_grad_(False)
    return model
