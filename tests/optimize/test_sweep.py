"""``sweep``: the border and what truncation keeps per resolution, against ResNet18's fields by hand.

ResNet18 (torchvision, 10 classes): r_min at every block's output is the stem's 11, and a block's second
conv sees 11 + 2 * j: 11 + 2 * 16 = 43 in layer3.1 and layer4.0, 11 + 2 * 32 = 75 in layer4.1.
"""

from __future__ import annotations

import pytest

import rewriter
from rewriter.optimize import OptimizeError, parse_sizes, sweep

STEM_TO_LAYER3_0 = 9_536 + 2 * 73_984 + 230_144 + 295_424 + 919_040  # conv1+bn1, layer1, layer2, layer3.0
LAYER3_1, LAYER4_0 = 2 * 589_824 + 2 * 512, 1_179_648 + 2_359_296 + 131_072 + 3 * 1_024


@pytest.fixture(scope="module")
def resnet18_sweep():
    model, _ = rewriter.load_model("resnet18", num_classes=10)
    return sweep(model, [32, 64, 96], name="resnet18")


def test_the_tail_shrinks_as_the_input_grows(resnet18_sweep):
    """At 32 and 64 px layer4.1.conv2 (75) is the one unproductive layer; at 96 px none is."""
    rows = resnet18_sweep.rows
    assert [r.figures.unproductive for r in rows] == [1, 1, 0]
    assert [r.figures.border_layer_min for r in rows] == ["layer4.1.conv2", "layer4.1.conv2", None]
    assert rows[2].figures.final_r_min == (75, 75) and rows[2].figures.fit == pytest.approx(75 / 96)


def test_truncation_keeps_what_the_border_allows_at_each_size(resnet18_sweep):
    """At 32 px the cut goes after layer3.0 (layer3.1 and layer4.0 see 43 > 32); at 64 px after layer4.0
    (43 <= 64); at 96 px there is nothing to cut. Parameters: the kept layers and a new c -> 10 head."""
    rows = resnet18_sweep.rows
    assert rows[0].truncated.params == STEM_TO_LAYER3_0 + 256 * 10 + 10 == 1_604_682
    assert rows[1].truncated.params == STEM_TO_LAYER3_0 + LAYER3_1 + LAYER4_0 + 512 * 10 + 10
    assert rows[2].truncated is None and rows[2].truncate_note == "nothing to cut"
    assert resnet18_sweep.best.size == (96, 96)
    assert "96 px" in resnet18_sweep.summary()


def test_sizes_that_do_not_run_are_rows_that_say_so():
    model, _ = rewriter.load_model("cifar_vgg11")
    result = sweep(model, [16, 32])
    assert result.rows[0].figures is None and "does not run" in result.rows[0].advice
    assert result.rows[1].figures.border_layer_min is not None


@pytest.mark.parametrize(
    ("text", "sizes"), [("32:128:32", [32, 64, 96, 128]), ("32,48", [32, 48]), ("64", [64])]
)
def test_sizes_are_read_as_a_range_or_a_list(text, sizes):
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["32:16", "a,b", "0", "1:1000:1"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(OptimizeError, match="START:STOP:STEP"):
        parse_sizes(text)


def test_each_rows_advice_says_what_to_do_at_that_size(resnet18_sweep):
    """32 and 64 px have a tail: truncate, or train at 96 px (the first size without one); 96 px is the fit."""
    advice = [row.advice for row in resnet18_sweep.rows]
    assert (
        advice[0] == "1 unproductive from layer4.1.conv2: truncate (keeps 1.60 M params), or train at 96 px"
    )
    assert advice[1].endswith("or train at 96 px")
    assert advice[2].startswith("all productive; the closest fit in the range")


def test_resnet50_says_both_rules():
    """Under the input rule ResNet50 has no tail at any of 32, 64, 96 px (the skip path keeps r_min at 11).
    Under the output rule (by hand, a block's 3x3 conv2 sees r_out 11 + 2 j with j its input jump): 43 in
    layer3.1 .. 3.5 and layer4.0, 75 in layer4.1 and 4.2; 27 in layer3.0. So 8 layers exceed 32 px (tail
    from layer3.1.conv2), 2 exceed 64 px, none 96 px."""
    model, _ = rewriter.load_model("resnet50")
    result = sweep(model, [32, 64, 96], name="resnet50")
    assert [r.figures.unproductive for r in result.rows] == [0, 0, 0]
    assert [r.unproductive_output for r in result.rows] == [8, 2, 0]
    summary = result.summary()
    assert summary.startswith("under the input rule no layer is unproductive at any size from 32 to 96 px")
    assert "finds 8 unproductive at 32 px to 2 at 64 px" in summary
    assert "rewriter rewrite resnet50 --input-size 32 --strategy truncate -p truncate.rule=output" in summary
    assert result.rows[1].advice == (
        "all productive; the last layer sees 17%: 32 px fits closer; 2 unproductive by the output rule"
    )
