"""One trace, many sizes: what an analysis records at one size is its own, never written into the fx nodes
that every analysis of the trace shares."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rewriter
from rewriter.analysis import is_traced, module_use, trace


class PoolBySize(nn.Module):
    """A 3x3 conv, then average pooling whose kernel is the feature map's width, read from the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.avg_pool2d(x, x.size(3))


def test_an_argument_computed_from_the_size_is_read_at_each_analysis_own_size():
    # conv: r = 3 (jump 1); pooling with a kernel of the map's width w: r = 3 + (w - 1) = w + 2.
    traced = rewriter.trace_model(PoolBySize())
    at16, at8 = (traced.analyze(size, flops=False) for size in (16, 8))
    assert at16.layer("avg_pool2d").r_out_min == (18, 18)
    assert at8.layer("avg_pool2d").r_out_min == (10, 10)
    assert at16.layer("avg_pool2d").output_size == (1, 1) and at8.layer("conv").output_size == (8, 8)


def test_analyses_write_nothing_into_the_traced_nodes():
    traced = rewriter.trace_model(PoolBySize())
    nodes = list(traced.graph_module.graph.nodes)
    before = [dict(node.meta) for node in nodes]  # what fx itself keeps there (a stack trace, ...)
    traced.analyze(16, flops=True)
    traced.analyze(8, flops=True)
    assert [node.meta for node in nodes] == before


class Idle(nn.Module):
    """``used`` reaches the output, ``checked`` is called only for an assert on its shape, ``spare`` never."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.checked, self.spare = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(self.checked(x).shape[1] == 3, "three channels")
        return self.used(x) * self.scale


def test_module_use_tells_called_modules_from_those_the_output_depends_on():
    use = module_use(trace(Idle())[0])
    assert use.called == {"used", "checked"}
    assert use.live_calls == {"used"}
    assert use.live_reads == {"scale"}


def test_a_value_is_traced_only_while_a_trace_runs():
    seen = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(is_traced(x))
            return x

    trace(Probe())
    Probe()(torch.zeros(1))
    assert seen == [True, False]
