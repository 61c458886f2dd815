"""remove-stem-downsampling where the stem is a block of the body's class (RepVGG, MobileOne), and the
refusal on a token model, which names the layer that mixes tokens (not 'the head')."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewriter

from ..nets import conv


class RepBlock(nn.Module):
    """RepVGG's block: a 3x3 and a 1x1 branch with the same stride, added."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.kxk = conv(cin, cout, 3, stride)
        self.one = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.kxk(x) + self.one(x))


class RepNet(nn.Module):
    """A stride-2 stem that is a RepBlock, like the body's blocks (timm's repvgg_a0, mobileone_s0)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = RepBlock(3, 8, 2)
        self.stages = nn.Sequential(RepBlock(8, 8), RepBlock(8, 16, 2), RepBlock(16, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def test_a_stem_of_the_body_block_class_is_the_stem():
    model = RepNet()
    result = rewriter.rewrite(model, ["remove-stem-downsampling"], input_size=32, latency=False)
    plan = result.plans[0]
    assert [e.target for e in plan.edits] == ["stem.kxk", "stem.one"]  # it was found empty: nothing removed
    assert "before the first block 'stages.0' (RepBlock)" in plan.notes[0]
    assert result.model.stem.kxk.stride == (1, 1) and result.model.stem.one.stride == (1, 1)
    assert result.model.stages[1].kxk.stride == (2, 2)  # the body keeps its downsampling
    assert torch.equal(result.model.stem.kxk.weight, model.stem.kxk.weight)


class TinyMixer(nn.Module):
    """MLP-Mixer: 4x4 patches, a token-mixing Linear over the 64 tokens, a channel MLP, mean, head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, 4)
        self.tokens = nn.Linear(64, 64)
        self.channels = nn.Linear(8, 8)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2)  # [N, C, T]
        x = x + self.tokens(x)
        x = x.transpose(1, 2)
        x = x + self.channels(x)
        return self.head(x.mean(1))


def test_a_token_mixing_layer_is_not_called_the_head():
    with pytest.raises(
        rewriter.RewriteError, match=r"the layer 'tokens' mixes a fixed number of positions \(8x8"
    ):
        rewriter.rewrite(TinyMixer(), ["remove-stem-downsampling"], input_size=32, latency=False)
