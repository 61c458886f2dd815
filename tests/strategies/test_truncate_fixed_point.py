"""truncate reaches a fixed point: the truncated model has no unproductive layer at the target size, and
truncating it again changes nothing (issue 11, item 4)."""

from __future__ import annotations

import pytest

import rewriter
from rewriter.analysis import cut_points
from rewriter.engine import extract_prefix
from rewriter.models import GapLinearHead, Truncated


def _model(name: str):
    return rewriter.load_model(name, num_classes=10)[0]  # real weights: the rewrite compares them bit for bit


def _truncated(model, size: int) -> rewriter.Result:
    return rewriter.rewrite(model, {"steps": ["truncate"]}, input_size=size, latency=False)


def assert_fixed_point(model, size: int) -> rewriter.Result:
    result = _truncated(model, size)
    analysis = rewriter.analyze(result.model, size, flops=False)
    assert analysis.border_layer_min is None
    assert analysis.unproductive_layers == []
    again = _truncated(result.model, size)
    assert again.plans[0].is_noop, again.plans[0].edits
    return result


def test_resnet18_at_32_keeps_layer3_0():
    # r_in_min (input rule) of the convs that exceed 32 (the analyze table): layer3.1.conv2 43,
    # layer4.0.conv2 43, layer4.1.conv2 75 (b_min). Cut before layer4.1, the model would end with
    # layer4.0.conv2 (43), its own tail; before layer4.0 with layer3.1.conv2 (43); before layer3.1 with
    # layer3.0.conv2 (27): within 32. The old one-block cut left layer4.0.conv2 unproductive.
    result = assert_fixed_point(_model("resnet18"), 32)
    assert result.plans[0].cut.at == "layer3.0.relu_1"
    features = result.model.features
    assert len(features.layer3) == 1 and not hasattr(features, "layer4")


def _brute_force_cut(model, size: int) -> str:
    """The latest cut point at or before b_min's block whose truncated model, built and analyzed here,
    has no unproductive layer: a second method, which does not reason about kept receptive fields."""
    analysis = rewriter.analyze(model, size, flops=False)
    graph = analysis.graph
    border = graph[analysis.border_layer_min].index
    candidates = [cut for cut, block in cut_points(graph) if graph[block[0]].index <= border and cut]
    for cut in reversed(candidates):
        features = extract_prefix(model, cut)
        head = GapLinearHead(graph[cut].output_shape[1], 10)
        if rewriter.analyze(Truncated(features, head), size, flops=False).border_layer_min is None:
            return cut
    raise AssertionError("no cut point leaves a model without a tail")


@pytest.mark.parametrize(("name", "size"), [("resnet18", 32), ("cifar_resnet18", 8)])
def test_the_cut_is_the_latest_that_leaves_no_tail(name, size):
    model = _model(name)
    assert _truncated(model, size).plans[0].cut.at == _brute_force_cut(model, size)


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize(
    "name", ["resnet18", "resnet34", "resnet50", "cifar_resnet18", "mobilenet_v2", "densenet121"]
)
def test_truncation_reaches_a_fixed_point(name, size):
    model = _model(name)
    before = rewriter.analyze(model, size, flops=False)
    if before.border_layer_min is None:
        assert _truncated(model, size).plans[0].is_noop
        return
    assert_fixed_point(model, size)
