"""Shared fixtures: analyses are cached per (model, size, options), since several tests read the same one."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from unittest import mock

import pytest
import torch

import rewriter


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory) -> Iterator[None]:
    """Decoded image folders are cached in a folder of the test run, never in the user's home."""
    with mock.patch.dict("os.environ", {"REWRITER_CACHE": str(tmp_path_factory.mktemp("cache"))}):
        yield


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Build models without filling their weights (the analysis reads shapes, not values).

    Building all 80 torchvision classifiers with their initialisers takes about 85 s here, about 3 s without.
    """
    with contextlib.ExitStack() as stack:
        for name in dir(torch.nn.init):
            if name.endswith("_") and not name.startswith("_"):
                stack.enter_context(mock.patch.object(torch.nn.init, name, lambda t, *a, **k: t))
        for name in ("normal_", "uniform_"):
            stack.enter_context(mock.patch.object(torch.Tensor, name, lambda t, *a, **k: t))
        yield


@functools.cache
def _analysis(name: str, size: int | tuple[int, int], rule: str, flops: bool) -> rewriter.Analysis:
    model, _ = rewriter.load_model(name)
    return rewriter.analyze(model, size, border_rule=rule, flops=flops, name=name)


@pytest.fixture
def analysis_of():
    """``analysis_of("cifar_vgg16", 32, rule="input")`` -> a cached Analysis (FLOPs off unless asked)."""

    def get(name: str, size: int | tuple[int, int] = 32, *, rule: str = "input", flops: bool = False):
        return _analysis(name, size, rule, flops)

    return get


def conv_numbering(analysis: rewriter.Analysis) -> list[str]:
    """Conv layers numbered as in the dissertation (digest 1.5): execution order, stem conv = 1, the 1x1
    downsample projections of ResNets not counted. Returns names; conv n is ``result[n - 1]``."""
    return [
        layer.name for layer in analysis.layers if layer.category == "conv" and "downsample" not in layer.name
    ]


def first_conv_at_or_after(analysis: rewriter.Analysis, name: str) -> int:
    """1-based conv number of the first conv at or after layer ``name`` in execution order."""
    order = analysis.layer_names()
    start = order.index(name)
    convs = conv_numbering(analysis)
    for layer in analysis.layers[start:]:
        if layer.name in convs:
            return convs.index(layer.name) + 1
    raise AssertionError(f"no conv at or after {name}")
