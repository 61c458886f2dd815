"""The CPU-sized trade-off study that ships with the project: accuracy against FLOPs, params and latency.

One command runs it: the whole of scikit-learn's digits (1437 training and 360 test scans, upsampled to
32 px), the models and recipes below x 3 seeds, every cell trained from scratch to convergence with one
setup: SGD with momentum 0.9, batch 32, one warm-up epoch, the learning rate found by a range test on the
baselines (`--lr auto`, recorded in study.json), divided by 10 at each third of the run. Every cell records
its curve and a convergence mark; the summary gives no verdict against a baseline that did not converge.

Sized for about an hour on a 2-core CPU with nothing else running: the grid below takes about 41 minutes
(MINUTES_PER_EPOCH, from ``--calibrate``), the range tests and the latency timing a few more, and the
recipe `rewriter optimize` chooses, added with ``--recipe FILE``, about 15 (it joins the grid as one more
column; a recipe that does not apply to a model fails that cell with its reason).

Usage:
    python benchmarks/tradeoff.py                       # the full study (about an hour on 2 cores)
    python benchmarks/tradeoff.py --recipe optimized.yaml
    python benchmarks/tradeoff.py --slice --out /tmp/t  # a quick check of the command (a few minutes)

The study lives in ``benchmarks/results/tradeoff/<data>/`` (resumable: run it again after a stop; ``--fresh``
starts again); the summary and the Pareto plot are linked from the README section this script writes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import HERE, machine, stamp, write_section

from rewriter._files import write_json
from rewriter.lab.study import Study, StudySetup, fill_latency, parse_variant, run_study, write_results
from rewriter.render import plot_curves, plot_pareto

MODELS = ["cifar_vgg11", "resnet18"]
RECIPES = ["baseline", "truncate", "reorganize-stages"]  # remove-stem-downsampling: 3-4x the cost, --recipe
EPOCHS = 15
SEEDS = 3
#: minutes per epoch of each cell on all of digits (45 batches of 32 and a test pass) on an idle 2-core
#: machine: `--calibrate` measured them on 2026-12-01 under a load average of 6-8 and divided by the
#: slowdown of a reference forward pass (5.9-8.2x); two runs averaged, about +-30 %. A recipe that changes
#: nothing for a model (reorganize-stages on resnet18 at 32 px) costs nothing: it reuses the baseline.
#: cifar_vgg16 (0.37 baseline, 0.17 truncate, 0.37 reorganize) and mpnet18 (1.0, 0.34, 0.71) did not fit.
MINUTES_PER_EPOCH = {
    ("cifar_vgg11", "baseline"): 0.22, ("cifar_vgg11", "truncate"): 0.15,
    ("cifar_vgg11", "reorganize-stages"): 0.22, ("cifar_vgg11", "remove-stem-downsampling"): 0.50,
    ("resnet18", "baseline"): 0.16, ("resnet18", "truncate"): 0.17,
    ("resnet18", "reorganize-stages"): 0.0, ("resnet18", "remove-stem-downsampling"): 0.66,
}  # fmt: skip
READING = (
    "How to read it: every cell is trained from scratch on the whole digits set until its curve is flat, with one "
    "learning rate for all (a range test on the baselines); the `converged` column says for how many seeds that "
    "held, and no verdict is given against a baseline that did not converge. Chance is the share of the most "
    "frequent test class (the summary gives it; the digits are nearly balanced). FLOPs are per image at 32 px; "
    "latency is CPU wall time, each model timed alone after training. "
    "The limits: one small, easy data set (8x8 scans upsampled), 3 seeds, a short CPU schedule: read the "
    "accuracy differences within their spread, not as the architectures' best on harder data."
)


CALIBRATION = StudySetup(data="digits", input_size=(32, 32), epochs=EPOCHS, lr="auto", batch_size=32)


def estimate(models: list[str], recipes: list[str], epochs: int, seeds: int) -> float | None:
    """Minutes the grid should take on an idle 2-core machine, from MINUTES_PER_EPOCH (None if a cell is
    not listed there, such as an added recipe)."""
    try:
        return sum(MINUTES_PER_EPOCH[(m, r)] for m in models for r in recipes) * epochs * seeds
    except KeyError:
        return None


def calibrate(models: list[str], recipes: list[str], batches: int = 4) -> dict[tuple[str, str], float]:
    """Minutes per epoch of every cell on all of digits (45 batches of 32 and one test pass), from
    ``batches`` timed training steps after a warm-up one, divided by how much slower than an idle machine
    this one is now: a plain cifar_vgg16 forward over 10 batches of 64 against the 2.35 s that
    saturation_speed.py measured on the idle machine."""
    import torch

    from rewriter.analysis import eval_mode
    from rewriter.lab.study import Cell
    from rewriter.lab.study import build_variant as build

    reference = build(Cell("cifar_vgg16", parse_variant("baseline"), 0), CALIBRATION)[0]
    x = torch.randn(64, 3, 32, 32)
    with eval_mode(reference), torch.no_grad():
        start = time.perf_counter()
        for _ in range(10):
            reference(x)
    slowdown = max(1.0, (time.perf_counter() - start) / 2.35)
    minutes = {}
    for model in models:
        for recipe in recipes:
            net, data, changed = build(Cell(model, parse_variant(recipe), 0), CALIBRATION)
            minutes[(model, recipe)] = (
                _epoch_minutes(net, data, batches) / slowdown if changed or recipe == "baseline" else 0.0
            )
            print(
                f"{model} {recipe}: {minutes[(model, recipe)]:.2f} min per epoch (slowdown {slowdown:.1f})",
                flush=True,
            )
    return minutes


def _epoch_minutes(net, data, batches: int) -> float:
    import torch
    from torch.utils.data import DataLoader

    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = iter(DataLoader(data.train, batch_size=32, shuffle=True))
    times = []
    for i in range(batches + 1):
        x, y = next(loader)
        start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    with torch.no_grad():
        start = time.perf_counter()
        for x, _ in DataLoader(data.test, batch_size=256):
            net.eval()(x)
        net.train()
        evaluation = time.perf_counter() - start
    return (sum(times) / len(times) * (1437 // 32) + evaluation) / 60


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="digits", help="data source (default: all of digits)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument(
        "--recipe", action="append", default=[], metavar="RECIPE",
        help="one more recipe for the grid (repeatable), e.g. the YAML `rewriter optimize` wrote",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--lr", default="auto", help="a learning rate, or auto (default: a range test)")
    parser.add_argument(
        "--workers", type=int, default=1, help="cells in parallel (timings are then contended)"
    )
    parser.add_argument(
        "--slice", action="store_true",
        help="a quick check of the command: 256 images, 2 epochs, 1 seed, 2 recipes, no README",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="the study folder (default benchmarks/results/tradeoff/DATA)"
    )
    parser.add_argument("--fresh", action="store_true", help="delete earlier results first")
    parser.add_argument("--retime", action="store_true", help="time every cell's latency again, one by one")
    parser.add_argument(
        "--calibrate", action="store_true", help="time an epoch of every cell; print the estimate"
    )
    args = parser.parse_args()
    if args.slice:
        args.data, args.epochs, args.seeds = f"{args.data}:256", 2, 1
    return args


def main() -> None:
    args = arguments()
    recipes = (RECIPES[:2] if args.slice else RECIPES) + args.recipe
    if args.calibrate:
        minutes = calibrate(args.models, recipes)
        print(
            f"estimate: {sum(minutes.values()) * args.epochs * args.seeds:.0f} min for {args.epochs} epochs x "
            f"{args.seeds} seeds on an idle 2-core machine, plus the range tests and latency timing"
        )
        return
    out = args.out or HERE / "results" / "tradeoff" / args.data.partition(":")[0]
    if args.fresh and out.exists():
        shutil.rmtree(out)
    lr = args.lr if args.lr == "auto" else float(args.lr)
    setup = StudySetup(
        data=args.data, input_size=(32, 32), epochs=args.epochs, lr=lr, batch_size=32, warmup_epochs=1
    )
    study = Study(args.models, [parse_variant(r) for r in recipes], list(range(args.seeds)), setup, out,
                  retry_failed=True)  # fmt: skip
    expected = estimate(args.models, recipes, args.epochs if not args.slice else 0, args.seeds)
    full = estimate(args.models, RECIPES, EPOCHS, SEEDS)
    grid = "" if expected is None or args.slice else f", this grid {expected:.0f} min"
    print(f"{len(study.cells)} cells, {len(study.pending())} to run; the full default study: about {full:.0f} min "
          f"on an idle 2-core machine{grid}")  # fmt: skip
    pending, began = len(study.pending()), time.perf_counter()
    run_study(study, workers=args.workers, plot=plot_pareto, curves=plot_curves)
    if args.retime:
        fill_latency(study, print, again=True)
        write_results(study, study.rows(), plot=plot_pareto, curves=plot_curves)
    minutes = _record_time(out, pending, began)
    summary = (out / "summary.md").read_text().replace("# Study summary", f"### `{args.data}`")
    wall = f"Wall time {minutes:.1f} min for the cells run. Plot: `results/tradeoff/{out.name}/pareto.png`."
    body = "\n".join([stamp("tradeoff", f" on {machine()}"), "", READING, "", summary, wall])
    print(body)
    if not args.slice and args.out is None:
        write_section("tradeoff", "the shipped accuracy/cost study (all of digits, 32 px, converged)", body)


def _record_time(out: Path, pending: int, began: float) -> float:
    """Wall time summed over the runs that trained cells (a study resumes), in timing.json."""
    timing = out / "timing.json"
    spent = json.loads(timing.read_text()) if timing.exists() else {"cells_run": 0, "minutes": 0.0}
    if pending:
        spent = {"cells_run": spent["cells_run"] + pending,
                 "minutes": spent["minutes"] + (time.perf_counter() - began) / 60}  # fmt: skip
        write_json(timing, spent)
    return spent["minutes"]


if __name__ == "__main__":
    main()
