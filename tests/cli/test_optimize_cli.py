"""``rewriter optimize`` and ``rewriter sweep`` on the command line: help, exit codes, files, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import rewriter
from rewriter.cli import main

from ..cli_runner import run

ONLY_TRUNCATE = ["--exclude", "remove-stem-downsampling", "--exclude", "reposition-downsampling"]


def test_help_teaches_the_objective_and_the_budget(capsys):
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    out = capsys.readouterr().out
    for flag in ("--objective", "--max-flops", "--max-params", "--max-latency-ms", "--validate", "--dry-run"):
        assert flag in out
    assert "1.5G" in out and "examples:" in out and "Exit codes" in out
    assert "the fewest unproductive layers" in out and "--prefer" in out and "0.5x" in out


def test_a_budget_below_every_candidate_exits_3_and_names_the_closest(capsys, tmp_path):
    """cifar_vgg11 at 32 px, truncation only. Fields (output of each layer): conv 1 3, pool 4, conv 2 8, pool
    10, conv 3 18, conv 4 26, pool 30, conv 5 46 > 32: the output rule cuts before conv 5 and keeps convs
    1-4 (with bias and batch norm) and a 256 -> 10 head, the fewest parameters of all candidates."""
    fewest = sum(9 * a * b + 3 * b for a, b in [(3, 64), (64, 128), (128, 256), (256, 256)]) + 2570
    assert fewest == 964_874
    out_file = tmp_path / "m.pt"
    code, out, _ = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--max-params", "1k",
                         *ONLY_TRUNCATE, "-o", str(out_file), "--report", str(tmp_path / "r.json"))  # fmt: skip
    assert code == 3
    assert "no candidate meets the budget (max params 1.00 k params)" in out
    assert "the closest is truncate(rule=output, keep_blocks=0)" in out and "964.87 k params" in out
    assert not out_file.exists()
    report = json.loads((tmp_path / "r.json").read_text())
    closest = report["candidates"][report["choice"]["closest"]]
    assert report["choice"]["status"] == "over-budget" and closest["params"] == fewest


def test_the_chosen_model_is_written_and_reloads(capsys, tmp_path):
    out_file, report_file, plot_file = tmp_path / "m.pt", tmp_path / "r.json", tmp_path / "front.png"
    code, out, err = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--objective", "params",
                         *ONLY_TRUNCATE, "-o", str(out_file), "--report", str(report_file),
                         "--plot", str(plot_file))  # fmt: skip
    assert code == 0, err
    # cost first (the default since issue 20): the fewest parameters with no unproductive layer, the output
    # rule's cut (964_874 parameters, worked out in the test above); fit first it was the input rule's
    assert "chosen: truncate(rule=output, keep_blocks=0)" in out and "it won because" in out
    report = json.loads(report_file.read_text())
    assert report["candidates"][report["choice"]["chosen"]]["params"] == 964_874
    assert len(report["candidates"]) == 5  # the baseline and 2 rules x 2 keep_blocks
    assert {c["status"] for c in report["candidates"]} <= {"ok", "duplicate", "dropped"}
    chosen = report["candidates"][report["choice"]["chosen"]]
    assert chosen["verified"] and chosen["unproductive_layers"] == 0
    model = rewriter.load(str(out_file))
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert sum(p.numel() for p in model.parameters()) == chosen["params"]
    assert plot_file.stat().st_size > 10_000


def test_a_budget_as_a_ratio_is_of_the_baseline_and_prefer_fit_is_reported(capsys):
    """cifar_vgg11 at 32 px, truncation only: the input rule's cut (96.43 M FLOPs, the fit-first choice
    with no budget) is within 0.7x of the baseline's 153.07 M; at 0.5x nothing is (the output rule's cut
    costs 77.54 M)."""
    argv = [
        "optimize",
        "cifar_vgg11",
        "--input-size",
        "32",
        *ONLY_TRUNCATE,
        "--prefer",
        "fit",
        "--dry-run",
        "--json",
    ]
    code, out, _ = run(capsys, *argv, "--max-flops", "0.7x")
    assert code == 0
    report = json.loads(out)
    base = report["candidates"][0]["flops"]
    assert report["budget"]["max_flops"] == pytest.approx(0.7 * base) and report["budget"]["ratios"] == {
        "flops": 0.7
    }
    assert report["choice"]["prefer"] == "fit" and set(report["choices"]) == {"cost", "fit"}
    assert report["candidates"][report["choice"]["chosen"]]["label"] == "truncate(rule=input, keep_blocks=0)"
    assert run(capsys, *argv, "--max-flops", "0.5x")[0] == 3


def test_outputs_are_refused_before_any_work_and_a_dry_run_writes_nothing(capsys, tmp_path):
    existing = tmp_path / "m.pt"
    existing.write_text("mine")
    code, _, err = run(
        capsys, "optimize", "cifar_vgg11", "--input-size", "32", *ONLY_TRUNCATE, "-o", str(existing)
    )
    assert code == 1 and "exists; pass --force" in err and len(err.strip().splitlines()) == 1
    assert existing.read_text() == "mine"
    fresh = tmp_path / "new.pt"
    code, out, _ = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", *ONLY_TRUNCATE, "--dry-run",
                       "-o", str(fresh), "--report", str(tmp_path / "r.json"))  # fmt: skip
    assert code == 0 and "dry run: nothing rewritten or written" in out
    assert not fresh.exists() and not (tmp_path / "r.json").exists()


def test_a_baseline_without_unproductive_layers_is_kept_and_nothing_written(capsys, tmp_path, monkeypatch):
    """tests.nets.Plain at 32 px: its last conv's input is based on 8 < 32 (conv 3, pool 4, conv 8)."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "optimize", "tests.nets:Plain", "--input-size", "32")
    assert code == 0
    assert "kept: the baseline already has no unproductive layer and meets the budget" in out
    assert list(tmp_path.iterdir()) == [] and "not saved" not in err


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--max-flops", "lots"], 2, "argument --max-flops: expected a positive number like 1.5G"),
        (["--max-steps", "-1"], 2, "argument --max-steps: expected an integer from 0 to 64, got -1"),
        (["--max-params", "0x"], 2, "argument --max-params: expected a ratio in (0, 1000], got 0.0"),
        (["--prefer", "speed"], 2, "argument --prefer: invalid choice: 'speed'"),
        (["--width-factor", "100"], 2, "argument --width-factor: expected factors from 1/64 to 16"),
        (["--validate", "2"], 2, "--validate K needs --data SPEC"),
        (["--search", "truncate.keep_blocks"], 2, "--search expects STRATEGY.PARAM=VALUE"),
        (["--search", "truncate.keep_blocks=-1"], 2, "keep_blocks: -1 is out of range"),
        (["--exclude", "trunacte"], 2, "did you mean 'truncate'"),
    ],
)
def test_bad_options_fail_with_one_line(capsys, argv, code, message):
    got, out, err = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", *argv)
    assert got == code and message in err and out == ""
    assert len([line for line in err.splitlines() if line.startswith("error")]) == 1


def test_verbose_lists_the_dropped_candidates_with_their_reasons(capsys):
    code, out, _ = run(capsys, "optimize", "cifar_vgg11", "--input-size", "32", "--exclude", "truncate",
                       "--search", "reposition-downsampling.site=4,7", "--search", "reposition-downsampling.move=0",
                       "--exclude", "remove-stem-downsampling", "--verbose", "--dry-run")  # fmt: skip
    assert code == 0
    assert (
        "dropped #2 reposition-downsampling(site=7, move=0): reposition-downsampling: site 7 does not exist"
        in out
    )


def test_sweep_prints_the_border_per_size(capsys, tmp_path):
    code, out, _ = run(capsys, "sweep", "resnet18", "--num-classes", "10", "--input-size", "32:96:32", "--json",
                       "--plot", str(tmp_path / "s.png"))  # fmt: skip
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["border_layer_min"] for r in rows] == ["layer4.1.conv2", "layer4.1.conv2", None]
    assert (tmp_path / "s.png").is_file()
