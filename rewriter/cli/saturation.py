"""``rewriter saturation``: how much of its output space every conv and linear layer uses, and the tails."""

from __future__ import annotations

import argparse
from typing import Any

from .._text import axes_text, render_table
from ..lab.batches import loader
from ..lab.convergence import at_chance
from ..lab.sampling import sample
from ..lab.saturation import DELTA, SaturationReport, compute_saturation
from ..render.plots import plot_saturation
from ._common import analysis_or_none, loader_workers, prepare_measurement, print_json, status, write_report
from ._parser import add_measuring_arguments, add_output_arguments, command_parser, integer, real

DESCRIPTION = """\
Measure the saturation of every conv and linear layer (delve's method, dissertation 2.2-2.3): the
covariance of the layer's output is accumulated in float64 over the data (every feature-map position is
a sample); the saturation is the fewest eigendirections explaining DELTA of its variance, divided by the
number of filters. s_mu is their mean. A tail is a run of 3 or more layers whose mean saturation is at
least 50 % below the rest: layers that do little, usually those after the border layer (paper 000, Fig. 2).
The dissertation measures a trained model on its training data (the default split here, without the
random crops and flips of training, so that the result is deterministic).
"""

EPILOG = """\
examples:
  rewriter saturation vgg16.pt --data cifar10:~/data/cifar10 --plot sat.png
  rewriter saturation resnet18 --data synthetic --epochs 3                  # trains briefly first, no files
  rewriter saturation vgg16.pt --data cifar10:~/data/cifar10 --json > sat.json
  rewriter rewrite vgg16.pt --strategy scale-width -p scale-width.saturation=sat.json -o vgg16-w.pt
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "saturation",
        help="saturation of every conv and linear layer on data, s_mu, and tails",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_measuring_arguments(parser)
    parser.add_argument(
        "--delta",
        type=real(0, 1, low_open=True, high_open=True),
        default=DELTA,
        help="share of the variance to explain, between 0 and 1 (default %(default)s)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="which split to measure on (default train)",
    )
    parser.add_argument(
        "--batches",
        type=integer(1),
        metavar="N",
        help="measure on N batches of a stratified sample of the split (every class in proportion, seed 0; "
        "default: the whole split)",
    )
    add_output_arguments(parser, plot="saturation per layer with receptive fields and borders")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup, device = prepare_measurement(args)
    data, model, size = setup.data, setup.model, setup.input_size
    untrained = at_chance(model, data, device)
    if untrained:
        status(f"warning: {untrained}")
    split = data.train_plain if args.split == "train" else data.test
    if args.batches is not None:
        split = sample(split, args.batches * args.batch_size)
    batches = loader(split, batch_size=args.batch_size, device=device, workers=loader_workers(args))
    report = compute_saturation(
        model, batches, delta=args.delta, device=device, progress=True, total=len(batches)
    )
    analysis = analysis_or_none(model.cpu(), size, args)
    result = {"model": args.model, "data": data.name, "split": args.split, **report.to_json(analysis)}
    write_report(args, result)
    if args.plot:
        plot_saturation(
            report, analysis, args.plot, title=f"{args.model} on {data.name} at {size[0]}x{size[1]}"
        )
        status(f"wrote {args.plot}")
    if args.json:
        print_json(result)
    else:
        _print_table(report, result, analysis, args.delta)
    return 0


def _print_table(report: SaturationReport, result: dict[str, Any], analysis: Any, delta: float) -> None:
    tails = {name for tail in report.tails for name in tail}
    rows = []
    for layer, row in zip(report.layers, result["layers"], strict=True):
        productive = {True: "yes", False: "NO", None: "-"}[row.get("productive")]
        r_in = axes_text(analysis.layer(layer.name).r_in_min) if "r_in_min" in row else "-"
        rows.append([layer.name, layer.type, str(layer.features), str(layer.k), f"{layer.saturation:.1%}", r_in,
                     productive, "tail" if layer.name in tails else ""])  # fmt: skip
    headers = ["layer", "type", "filters", "k", "saturation", "r_in_min", "productive", "tail"]
    print(render_table(headers, rows, align="<<>>>><<"))
    print(
        f"\ns_mu {report.mean:.1%} over {len(report.layers)} layers, {report.samples} images, delta {delta}"
    )
    if analysis is not None:
        print(
            f"border layer b_min {analysis.border_layer_min or 'none'}, b_max {analysis.border_layer_max or 'none'}"
        )
    for tail in report.tails:
        print(f"tail: {tail[0]} ... {tail[-1]} ({len(tail)} layers)")
    if not report.tails:
        print("no tail: no run of 3+ layers at least 50 % below the others' mean saturation")
