"""Every strategy on every model of the timm sweep at 64 px (issue 15): the rewrite is verified (the
pipeline's invariants, dead modules included), a no-op, or refused with a one-line reason; never a crash."""

from __future__ import annotations

import pytest

import rewriter

from ..models.timm_zoo import FAMILIES, build

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.slow

STEPS = (
    "truncate",
    "remove-stem-downsampling",
    "reorganize-stages",
    "decompose-kernels",
    {"scale-width": {"factor": 0.5}},
    "skip-irrelevant-layers",  # needs --data: refused with the reason
)


def outcomes(name: str, size: int = 64) -> dict[str, str]:
    """Per strategy: 'rewritten', 'no-op', or 'refused: <reason>'. Anything but a RewriterError is a crash
    and propagates."""
    model = build(name, size, meta=False)
    out = {}
    for step in STEPS:
        label = step if isinstance(step, str) else next(iter(step))
        try:
            result = rewriter.rewrite(model, [step], input_size=size, latency=False, measure_cost=False)
        except rewriter.RewriterError as err:
            message = str(err)
            assert message and "\n" not in message, f"{label} on {name}: {message!r}"
            out[label] = f"refused: {message}"
            continue
        out[label] = "no-op" if all(plan.is_noop for plan in result.plans) else "rewritten"
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_strategy_on_a_timm_family_is_verified_a_no_op_or_refused(family):
    assert len(outcomes(FAMILIES[family])) == len(STEPS)


def test_the_sweep_rewrites_the_models_issue_15_names():
    """timm's vgg11 and efficientvit_b0 did not trace; skresnet18's cut kept dead code (now refused by
    invariant 5 if it came back); RepVGG and MobileOne had an empty stem."""
    for name in ("vgg11", "efficientvit_b0", "skresnet18"):
        assert outcomes(name)["truncate"] in ("rewritten", "no-op"), name
    for name in ("repvgg_a0", "mobileone_s0"):
        assert outcomes(name)["remove-stem-downsampling"] == "rewritten", name
