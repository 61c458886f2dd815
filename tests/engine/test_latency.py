"""Latency that means something (issue 15.6): warm-up, repeats until the spread is small or the budget is
spent, the median and the interquartile range, the threads, and a noisy mark; timed on a scripted clock."""

from __future__ import annotations

import itertools

import pytest
import torch

from rewriter.engine import report as report_module
from rewriter.engine.report import Latency, Measurement, Report, time_call


class Clock:
    """perf_counter for ``time_call``: each call of the timed function lasts the next scripted duration."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def perf_counter(self) -> float:
        return self.now

    def call(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


@pytest.fixture
def clock(monkeypatch):
    def make(durations):
        fake = Clock(durations)
        monkeypatch.setattr(report_module.time, "perf_counter", fake.perf_counter)
        return fake

    return make


def test_a_steady_call_stops_at_the_minimum_repeats_after_the_warm_up(clock):
    fake = clock(itertools.repeat(0.010))
    timed = time_call(fake.call, warmup=3, repeats=10)
    assert fake.calls == 13 and timed.repeats == 10
    assert timed.median_ms == pytest.approx(10.0) and timed.iqr_ms == pytest.approx(0.0)
    assert not timed.noisy and timed.threads == torch.get_num_threads()


def test_a_spread_call_repeats_until_its_budget_is_spent_and_is_marked_noisy(clock):
    # 10 ms and 30 ms alternating: the quartiles never come within 3 % of the median
    fake = clock(itertools.cycle([0.010, 0.030]))
    timed = time_call(fake.call, warmup=1, repeats=10, budget_s=1.0)
    # one warm-up, then timed runs until 1 s of them has passed: 50 runs of 20 ms on average
    assert timed.repeats == 50
    assert timed.median_ms == pytest.approx(20.0)  # the median of 25 x 10 ms and 25 x 30 ms
    assert timed.iqr_ms == pytest.approx(20.0)  # Q1 = 10 ms, Q3 = 30 ms
    assert timed.noisy


def test_an_outlier_in_a_steady_call_does_not_make_it_noisy(clock):
    fake = clock(itertools.chain([0.5], [0.010] * 9, [0.9], itertools.repeat(0.010)))
    timed = time_call(fake.call, warmup=1, repeats=10)
    assert timed.median_ms == pytest.approx(10.0) and not timed.noisy  # a mean would say 49 ms


def test_the_report_shows_the_spread_and_marks_a_noisy_change():
    steady = Latency(10.0, 0.2, 10, 2)
    noisy = Latency(95.97, 60.0, 41, 2, noisy=True)
    rows = (
        Measurement("baseline", 10, 100, None, 0, steady),
        Measurement("1. step", 10, 134, None, 0, noisy),
    )
    text = Report("resnet18", (32, 32), rows).format()
    assert "10.00 ms ±0.10" in text and "95.97 ms ±30.00 noisy" in text
    assert "+859.7% ?" in text and "latency is noisy" in text and "2 threads" in text
    assert Report("m", (32, 32), rows).to_json()["rows"][1]["latency"]["iqr_ms"] == 60.0
