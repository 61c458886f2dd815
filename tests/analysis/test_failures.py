"""Failures keep their cause: a rule's known refusal is a warning, a rule's bug stops the analysis with the
rule's own error chained, and code the meta device cannot run is run for real instead of blamed on the size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewriter
from rewriter.analysis import OpContext, OpEffect


class Unfolds(nn.Module):
    """``Tensor.unfold`` (a sliding view along one dim), a call the unfold rule refuses to read."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unfold(3, 2, 2).sum(-1)


def test_a_rules_known_refusal_is_a_warning_that_says_why():
    analysis = rewriter.analyze(Unfolds(), 8, flops=False)
    assert any(
        "unknown op 'unfold'" in w and "its rule does not read it: Tensor.unfold windows are not read" in w
        for w in analysis.warnings
    ), analysis.warnings


class Buggy(nn.Module):
    """A third-party layer whose registered rule has a bug (divides by zero)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@rewriter.register_module_rule(Buggy, channels="keep")
def _buggy_rule(ctx: OpContext) -> OpEffect:
    return OpEffect("elementwise", layout=ctx.layout(ctx.input)[: 1 // 0])


def test_a_bug_inside_a_rule_stops_the_analysis_with_the_rules_error_chained():
    model = nn.Sequential(nn.Conv2d(3, 3, 3), Buggy())
    with pytest.raises(
        rewriter.AnalysisError, match=r"rule of Buggy failed .*ZeroDivisionError.*a bug"
    ) as caught:
        rewriter.analyze(model, 8, flops=False)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


class ReadsAValue(nn.Module):
    """Reads a tensor's value (``.item()``): the meta device has none, so a real forward must decide."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 2.0 if x.abs().sum().item() >= 0 else 1.0
        return x * scale


def test_code_that_reads_a_value_is_run_for_real_not_blamed_on_the_size():
    # 3x3 conv: r = 3; a leaf that reads a value (taken as 1x1); a 3x3 conv: r = 5.
    model = nn.Sequential(nn.Conv2d(3, 3, 3), ReadsAValue(), nn.Conv2d(3, 3, 3))
    layers = {
        layer.name: layer
        for layer in rewriter.analyze(model, 8, flops=False, leaf_modules=[ReadsAValue]).layers
    }
    assert layers["2"].r_out_min == (5, 5)


def test_a_model_too_small_for_its_kernel_is_blamed_on_the_size_with_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.Conv2d(3, 3, 5))
    with pytest.raises(rewriter.InputSizeError, match=r"does not run at 4x4: layer '1' \(Conv2d\) failed"):
        rewriter.analyze(model, 4, flops=False)
