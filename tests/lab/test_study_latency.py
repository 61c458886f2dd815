"""Latency that does not lie under load (issue 23, item 10): a study times on one thread and says so,
marks noisy figures, and computes no latency delta from a noisy one."""

from __future__ import annotations

import torch
from torch import nn

from rewriter.lab.study import StudySetup, latencies, summarize, summary_markdown

from .test_study import row

SETUP = StudySetup(data="synthetic:64", input_size=(8, 8), epochs=1, lr=0.01, latency_repeats=3)


class CountsThreads(nn.Module):
    """Records the torch thread count of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.conv(x)


def test_a_study_times_latency_on_one_thread_and_restores_the_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = CountsThreads()
        timed = latencies(model, SETUP)
        assert set(model.seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert timed["latency_ms_b1"] > 0 and isinstance(timed["latency_noisy"], bool)


def test_no_latency_delta_is_computed_from_a_noisy_figure_and_the_figure_is_marked():
    rows = [
        row("m", "baseline", 0, 0.9, 100, b1=3.28),
        row("m", "truncate", 0, 0.9, 50, b1=251.0),
        row("n", "baseline", 0, 0.9, 100, b1=2.0),
        row("n", "truncate", 0, 0.9, 50, b1=1.0),
    ]
    rows[1] = rows[1].replace(latency_noisy=True)  # timed while other work ran
    groups = {(g.model, g.recipe): g for g in summarize(rows)}
    assert groups["m", "truncate"].delta_latency_ms_b1_percent is None  # not +7552 %
    assert groups["m", "truncate"].delta_flops_percent == -50.0  # the other deltas stand
    assert groups["n", "truncate"].delta_latency_ms_b1_percent == -50.0  # quiet figures: a delta
    text = summary_markdown(list(groups.values()), SETUP)
    assert "| 251.00 noisy | - |" in text and "| 1.00 | -50.0 % |" in text
    assert "Latency: CPU, 1 thread," in text and "no latency delta is computed from a noisy figure" in text
