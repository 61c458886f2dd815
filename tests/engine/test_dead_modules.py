"""Invariant 5: a rewrite leaves no dead module behind; a cut drops the checks that kept removed blocks
alive (timm's SelectiveKernel asserts on its paths' shape)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewriter
from rewriter.analysis import trace
from rewriter.analysis.fx_tracer import module_use
from rewriter.engine import Plan, surgery
from rewriter.engine.verify import check_no_dead_modules, idle_parameters

from ..nets import conv


class Selective(nn.Module):
    """Two paths (3x3, 5x5) stacked, an assert on the stack's shape, then their sum: a SelectiveKernel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.paths = nn.ModuleList([conv(channels, channels, 3), conv(channels, channels, 5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([path(x) for path in self.paths], dim=1)
        torch._assert(stacked.shape[1] == len(self.paths), "one slice per path")
        return stacked.sum(1)


class SelectiveNet(nn.Module):
    """stem 3x3 (r 3) -> conv (r 5) -> Selective (reads r 5) -> Selective (reads r 9) -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.c1 = conv(3, 4), conv(4, 4)
        self.b1, self.b2 = Selective(4), Selective(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b2(self.b1(self.c1(self.stem(x)))).mean((2, 3)))


def truncate(model: nn.Module) -> rewriter.Result:
    # feature size 5: b2's paths read r 9 > 5 and are the unproductive tail; the cut goes before b2
    return rewriter.rewrite(model, [{"truncate": {"feature_size": 5}}], input_size=32, latency=False)


def test_a_cut_drops_the_assert_that_kept_the_removed_block_alive():
    result = truncate(SelectiveNet())
    assert result.plans[0].cut.at == "b1.sum"
    kept = {name for name, _ in result.model.named_modules()}
    assert not any(".b2" in name for name in kept), sorted(kept)
    assert "features.b1.paths.1" in kept  # the kept block's own paths and assert stay


def test_without_that_the_dead_block_is_caught_by_invariant_5(monkeypatch):
    monkeypatch.setattr(surgery, "_drop_dead_checks", lambda graph, output: None)
    with pytest.raises(
        rewriter.RewriteError, match=r"invariant 5 broken, .* 2 dead module\(s\) .*b2\.paths\.0"
    ):
        truncate(SelectiveNet())


class Both(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.live, self.dead = conv(3, 4), conv(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.live(x) + self.dead(x)


class OnlyChecked(Both):
    """``dead`` still runs, but only an assert reads it: dead code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(self.dead(x).shape[1] == 4, "")
        return self.live(x)


class NeverCalled(Both):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.live(x)


def check(old: nn.Module, new: nn.Module) -> None:
    idle = idle_parameters(old, module_use(trace(old)[0]))
    check_no_dead_modules(new, module_use(trace(new)[0]), idle, Plan("test", {}, ()))


@pytest.mark.parametrize("new", [OnlyChecked, NeverCalled])
def test_a_module_the_output_no_longer_needs_is_dead(new):
    with pytest.raises(rewriter.RewriteError, match=r"1 dead module\(s\) .*\(108 parameters\): dead"):
        check(Both(), new())


def test_a_module_already_idle_in_the_input_model_is_not_blamed_on_the_rewrite():
    check(NeverCalled(), OnlyChecked())
