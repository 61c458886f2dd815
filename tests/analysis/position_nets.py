"""Tiny nets for the faults of issue 15: ops that move or resize positions without a kernel (explicit
padding, space-to-depth by view/permute/view), and branches whose module returns a tuple (an LSTM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets import conv


class FunctionalPad(nn.Module):
    """conv3 -> F.pad(1) -> conv3 (no padding of its own) -> conv3: r 3, 5, 7 (padding shifts nothing).

    Taken as element-wise, the padded map no longer matched its input's layout and every later op counted as
    1x1 (r_max 3 instead of 7).
    """

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = conv(3, 4), nn.Conv2d(4, 4, 3, bias=False), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(F.pad(self.a(x), (1, 1, 1, 1))))


class PadModules(nn.Module):
    """conv3 -> ZeroPad2d(1) -> conv3 -> ReflectionPad2d((2, 0, 1, 1)) -> conv3 (asymmetric): r 3, 5, 7."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.zero = conv(3, 4), nn.ZeroPad2d(1)
        self.b, self.reflect = nn.Conv2d(4, 4, 3, bias=False), nn.ReflectionPad2d((2, 0, 1, 1))
        self.c = nn.Conv2d(4, 4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.reflect(self.b(self.zero(self.a(x)))))


class BlurPool(nn.Module):
    """timm's BlurPool2d after a 3x3 conv: reflection pad, then a fixed 3x3 binomial filter, depthwise,
    stride 2, as a functional conv on a buffer; then a 3x3 conv. r 3, 5, then 5 + 2 * 2 = 9."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = conv(3, 4), conv(4, 4)
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("filt", (taps[:, None] * taps[None, :] / 16).expand(4, 1, 3, 3).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.a(x), (1, 1, 1, 1), mode="reflect")
        return self.c(F.conv2d(x, self.filt, stride=2, groups=4))


class SpaceToDepth(nn.Module):
    """TResNet's stem: 4x4 pixel blocks moved into the channels by view/permute/view, then a 3x3 conv.

    The conv sees 3x3 blocks of 4x4 pixels: r 4 + (3 - 1) * 4 = 12, then a second 3x3 conv adds 2 * 4: 20.
    """

    def __init__(self, block: int = 4) -> None:
        super().__init__()
        self.block = block
        self.c1, self.c2 = conv(3 * block * block, 8), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        b = self.block
        x = x.view(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).contiguous()
        return self.c2(self.c1(x.view(n, c * b * b, h // b, w // b)))


class PixelUnshuffled(nn.Module):
    """The same stem with ``nn.PixelUnshuffle(4)``: r 12, then 20."""

    def __init__(self) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(4)
        self.c1, self.c2 = conv(48, 8), conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.c1(self.unshuffle(x)))


class DepthwiseAfterSpaceToDepth(nn.Module):
    """A 3x3 depthwise conv after space-to-depth: each output channel is one pixel of a block, so it sees
    that pixel in 3x3 blocks, 4 apart: r 9; the positions stay 1 apart (a 1x1 conv then mixes them: 12)."""

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(48, 48, 3, padding=1, groups=48, bias=False)
        self.pw = nn.Conv2d(48, 8, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.view(n, c, h // 4, 4, w // 4, 4).permute(0, 3, 5, 1, 2, 4).reshape(n, c * 16, h // 4, w // 4)
        return self.pw(self.dw(x))


class RowLSTM(nn.Module):
    """Sequencer2D's horizontal half: a 3x3 conv, a bidirectional LSTM along each row, a 3x3 conv.

    The LSTM mixes a whole row: r (3, unbounded), then (5, unbounded). Its tuple result used to drop the
    whole branch from the graph before any warning, which left r_max at the first conv's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = conv(3, 8), conv(8, 8)
        self.rnn = nn.LSTM(8, 4, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        n, c, h, w = x.shape
        rows, _ = self.rnn(x.permute(0, 2, 3, 1).reshape(n * h, w, c))
        return self.b(rows.reshape(n, h, w, -1).permute(0, 3, 1, 2))


class TwoOutputs(nn.Module):
    """A module without a rule that returns two tensors (made a leaf): both branches stay in the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = conv(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.sum() > 0:  # untraceable: it must be a leaf
            return x, self.conv(x)
        return x, x


class TupleBranch(nn.Module):
    """conv3 -> TwoOutputs (a leaf) -> conv3 on its second output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.pair, self.b = conv(3, 4), TwoOutputs(), conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.pair(self.a(x))[1])
