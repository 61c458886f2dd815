"""FLOPs counted on the meta device equal fvcore's, the reference, op for op.

fvcore is run here as the oracle (a jit trace and a real forward pass); ``benchmarks/flops_vs_fvcore.py``
compares all 80 torchvision classifiers.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.analysis.flops_fvcore import count_flops
from rewriter.models.sources import load_model

from .. import nets
from ..conftest import skip_weight_init


def meta_and_fvcore(model: nn.Module, size: int, **kwargs) -> tuple[rewriter.Analysis, rewriter.Analysis]:
    return (
        rewriter.analyze(model, size, **kwargs),
        rewriter.analyze(model, size, flops_backend="fvcore", **kwargs),
    )


def assert_equal_counts(model: nn.Module, size: int, **kwargs) -> rewriter.Analysis:
    meta, fvcore = meta_and_fvcore(model, size, **kwargs)
    assert (meta.flops_backend, fvcore.flops_backend) == ("meta", "fvcore")
    assert dict(meta.flops_by_operator) == dict(fvcore.flops_by_operator)
    assert meta.flops == fvcore.flops
    return meta


def test_a_conv_and_a_batch_norm_by_hand():
    # conv 3->4 3x3 at 8x8: 4*3*9 weights x 64 positions = 6912 multiply-adds; eval batch norm with an
    # affine transform: 2 per element, 4*64*2 = 512 (fvcore's convention).
    model = nn.Sequential(nets.conv(3, 4), nn.BatchNorm2d(4))
    analysis = assert_equal_counts(model, 8)
    assert dict(analysis.flops_by_operator) == {"conv": 6912, "batch_norm": 512}


class EveryHandledOp(nn.Module):
    """One of each op fvcore has a formula for, in the module and the functional form."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.norms = nn.ModuleList(
            [nn.BatchNorm2d(8, affine=False), nn.BatchNorm2d(8, track_running_stats=False), nn.GroupNorm(2, 8),
             nn.InstanceNorm2d(8), nn.InstanceNorm2d(8, affine=True), nn.LayerNorm([8, 16, 16])]
        )  # fmt: skip
        self.nearest, self.bilinear = (
            nn.Upsample(scale_factor=2),
            nn.Upsample(scale_factor=2, mode="bilinear"),
        )
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.dw(self.conv(x)))
        for norm in self.norms:
            x = norm(x)
        x = F.layer_norm(x, [16], None, None) + F.group_norm(x, 4)
        x = F.adaptive_avg_pool2d(self.bilinear(self.nearest(x)), 16)
        x = x + F.interpolate(x, scale_factor=1.0, mode="bicubic")  # bicubic: no formula, 0
        flat = x.flatten(2)  # [1, 8, 256]
        y = torch.bmm(flat.transpose(1, 2), flat) @ flat.transpose(1, 2)  # [1, 256, 8]
        y = torch.einsum("bij,jk->bik", y, self.weight) + torch.matmul(y, self.weight)
        grid = torch.zeros(1, 4, 4, 2, device=x.device)
        return F.grid_sample(x, grid, align_corners=False).mean() + torch.addmm(y[0], y[0], self.weight).sum()


def test_every_handled_op_counts_as_in_fvcore():
    assert_equal_counts(EveryHandledOp(), 16)


class Attention(nn.Module):
    """nn.MultiheadAttention off its fused fast path (sequence first), with and without weights or a mask."""

    def __init__(self, need_weights: bool, masked: bool, batch_first: bool = False) -> None:
        super().__init__()
        self.need_weights, self.masked = need_weights, masked
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).permute(2, 0, 1)  # [L, N, E]
        if self.attn.batch_first:
            tokens = tokens.transpose(0, 1)
        first = tokens[:, :, 0] if not self.attn.batch_first else tokens[:, :, 0].transpose(0, 1)
        mask = (first != first).transpose(0, 1) if self.masked else None  # [N, L], all False
        out, _ = self.attn(tokens, tokens, tokens, need_weights=self.need_weights, key_padding_mask=mask)
        return out.mean()


@pytest.mark.parametrize(
    ("need_weights", "masked", "batch_first"),
    [(True, False, False), (True, True, False), (False, False, False), (False, False, True)],
)
def test_multi_head_attention_counts_as_in_fvcore(need_weights, masked, batch_first):
    # batch_first with self-attention in eval mode takes torch's fused fast path, which fvcore counts as 0
    analysis = assert_equal_counts(Attention(need_weights, masked, batch_first), 16)
    fused = dict(analysis.flops_skipped_ops).get("_native_multi_head_attention", 0)
    assert fused == (1 if batch_first else 0)


class Opaque(nn.Module):
    """A module the analyzer is told to treat as a leaf: its FLOPs are counted from the calls inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * 2


def test_a_leaf_module_is_counted_from_inside():
    model = nn.Sequential(nets.conv(3, 8), Opaque())
    analysis = assert_equal_counts(model, 8, leaf_modules=["Opaque"])
    assert dict(analysis.flops_by_operator)["linear"] == 64 * 8 * 8


def _built(name: str) -> nn.Module:
    with skip_weight_init():
        return load_model(name)[0]


# one of each kind of network: residual, depthwise, squeeze-and-excitation with SiLU, no batch norm,
# channel shuffle, channels-last with LayerNorm2d, non-global adaptive pooling
@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v2", "efficientnet_b0", "squeezenet1_1", "shufflenet_v2_x0_5", "vgg11"]
)
@pytest.mark.parametrize("size", [32, 224])
def test_torchvision_totals_equal_fvcore(name, size):
    model = _built(name)
    meta = rewriter.analyze(model, size)
    assert meta.flops == count_flops(model, (size, size)).flops


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "size"),
    [("convnext_tiny", 32), ("densenet121", 32), ("googlenet", 224), ("swin_t", 224), ("swin_v2_t", 32),
     ("vit_b_32", 224), ("inception_v3", 224)],
)  # fmt: skip
def test_torchvision_totals_equal_fvcore_on_transformers_and_the_rest(name, size):
    # window attention (leaf modules counted from inside), the fused MHA fast path; maxvit_t's einsum is
    # in benchmarks/flops_vs_fvcore.py (fvcore takes ~10 s on it), a generic einsum in EveryHandledOp
    model = _built(name)
    meta = rewriter.analyze(model, size)
    fvcore = rewriter.analyze(model, size, flops_backend="fvcore")
    assert dict(meta.flops_by_operator) == dict(fvcore.flops_by_operator)
    assert meta.flops == fvcore.flops


def test_an_unknown_backend_is_refused():
    with pytest.raises(rewriter.AnalysisError, match="FLOP backend must be one of meta, fvcore, got 'jit'"):
        rewriter.analyze(nets.Plain(), 8, flops_backend="jit")


def test_the_json_says_which_backend_counted():
    meta, fvcore = meta_and_fvcore(nets.Plain(), 8)
    assert (meta.to_json()["flops_backend"], fvcore.to_json()["flops_backend"]) == ("meta", "fvcore")
    assert rewriter.analyze(nets.Plain(), 8, flops=False).to_json()["flops_backend"] is None
