"""decompose-kernels: the rewritten model is analysed as any other (issue 10.3)."""

from __future__ import annotations

import types

import pytest
from torch import nn

import rewriter


@pytest.mark.parametrize("block", ["dw-pw", "dw-gpw", "dw-rpw"])
def test_a_decomposed_model_analyzes_without_warnings(block):
    """The rolling pointwise conv once had the *module* ``elementwise`` registered as its rule, so every
    analysis of a DW+RPW model warned 'its rule failed (TypeError: module object is not callable)'."""
    model, _ = rewriter.load_model("cifar_vgg11", num_classes=10)
    result = rewriter.rewrite(model, {"steps": [{"decompose-kernels": {"block": block}}]}, input_size=32,
                              latency=False)  # fmt: skip
    analysis = rewriter.analyze(result.model, 32, flops=False)
    assert analysis.warnings == ()
    pointwise = [m for m in result.model.modules() if type(m).__name__ == "RollingPointwise"]
    assert bool(pointwise) == (block == "dw-rpw")


def test_a_rule_must_be_callable():
    class Opaque(nn.Module):
        pass

    with pytest.raises(TypeError, match="must be a function taking an OpContext"):
        rewriter.register_module_rule(Opaque)(types.ModuleType("elementwise"))
    with pytest.raises(TypeError, match="must be a function taking an OpContext"):
        rewriter.register_function_rule("opaque_fn")(42)
