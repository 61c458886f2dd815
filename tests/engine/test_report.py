"""Before/after reports: what a model that routes each image costs is said plainly (issue 14.18)."""

from __future__ import annotations

from rewriter.engine import Measurement, Report


def _report(per_image: float) -> Report:
    base = Measurement("baseline", params=1000, flops=20_090_000, border_layer_min=None, unproductive=0)
    routed = Measurement("1. skip-irrelevant-layers", params=1200, flops=20_090_000, border_layer_min=None,
                         unproductive=0, flops_per_image=per_image)  # fmt: skip
    return Report("relevance_cnn", (28, 28), (base, routed))


def test_routing_that_costs_more_than_the_static_model_says_it_saves_nothing():
    """Issue 14.18's case: every test image routed to the deepest label, 21.77 M against 20.09 M static."""
    report = _report(21_770_000)
    text = report.format()
    assert "FLOPs/image" in text and "+8.4%" in text  # 21.77 / 20.09 - 1 = +8.36 %
    (note,) = report.routing_notes
    assert "saves nothing: it costs 8.4% more" in note


def test_routing_that_saves_gives_the_share_saved():
    report = _report(13_450_000)  # 1 - 13.45 / 20.09 = 33.05 %
    (note,) = report.routing_notes
    assert "saves 33.1% of the input model's 20.09 M FLOPs per image" in note
    assert report.to_json()["rows"][1]["delta"]["flops_per_image_percent"] == -33.05


def test_a_static_rewrite_has_no_per_image_column():
    base = Measurement("baseline", params=10, flops=100, border_layer_min=None, unproductive=0)
    report = Report("m", (32, 32), (base, Measurement("1. truncate", 5, 50, None, 0)))
    assert "FLOPs/image" not in report.format() and report.routing_notes == ()
