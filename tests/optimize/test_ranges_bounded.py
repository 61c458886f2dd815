"""Counts checked before ranges are materialised (issue 23, item 7): a sweep range of a billion sizes and
a search of a million combinations are refused at once, in bounded memory."""

from __future__ import annotations

import time

import pytest

from rewriter import RecipeError
from rewriter.optimize import OptimizeError, parse_sizes, search_space

from ..models.test_fuzz import bounded_memory


def test_a_billion_sizes_are_refused_before_the_list_is_built():
    start = time.perf_counter()
    with bounded_memory():  # the list would take about 36 GB
        for text in ("1:1000000000:1", "1:" + "9" * 5000, ",".join(["32"] * 100_000)):
            with pytest.raises(OptimizeError, match="at most 256"):
                parse_sizes(text)
    assert time.perf_counter() - start < 5
    assert parse_sizes("32:8192:32")[-1] == 8192 and len(parse_sizes("32:8192:32")) == 256  # at the bound


def test_a_search_of_too_many_combinations_is_refused_before_any_is_built():
    thetas = [round(0.01 * i, 2) for i in range(1, 101)]  # 100 x 101 = 10100 combinations
    alphas = [round(0.01 * i, 2) for i in range(0, 101)]
    start = time.perf_counter()
    with pytest.raises(RecipeError, match=r"10100 combinations of theta, alpha.*more than 10000"):
        search_space(values={"reorganize-stages": {"theta": thetas, "alpha": alphas}})
    assert time.perf_counter() - start < 2
    space = search_space(values={"reorganize-stages": {"theta": thetas[:10], "alpha": alphas[:10]}})
    assert len(next(c for c in space if c.name == "reorganize-stages").configs) == 100
