"""``rewriter relevance``: which units matter to which images (paper 004), beside the receptive-field border."""

from __future__ import annotations

import argparse

from .._text import render_table
from ..analysis.traced_model import analyze
from ..lab.batches import loader
from ..lab.relevance import compute_relevance
from ..render.plots import plot_relevance
from ._common import loader_workers, prepare_measurement, print_json, status, write_report
from ._parser import add_measuring_arguments, add_output_arguments, command_parser, integer

DESCRIPTION = """\
Rank the images by how strongly they activate each unit (paper 004): for the first conv or block and
every skippable unit (one whose output has its input's shape: a residual block inside a stage, a
same-width conv in a plain net), take the first MAPS feature maps and, for each, the TOP images with the
largest mean absolute activation. An image's label is the deepest unit it is among the strongest of;
`skip-irrelevant-layers` trains a router to predict it and skips the units after it. Skippable units that
label almost no image are listed as candidates for removal from every image, beside the border layer b_min
that the receptive-field analysis predicts without data.
"""

EPILOG = """\
examples:
  rewriter relevance resnet18.pt --data digits --plot relevance.png
  rewriter relevance relevance_cnn --data digits --epochs 3 --lr 0.001 --json
  rewriter train relevance_cnn --data digits --epochs 5 --lr 0.01 -o cnn1.pt && rewriter relevance cnn1.pt --data digits
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "relevance",
        help="which skippable units matter to which images (paper 004)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_measuring_arguments(parser)
    parser.add_argument(
        "--maps", type=integer(1, 4096), default=10, help="feature maps per unit (default 10, paper 004)"
    )
    parser.add_argument(
        "--top", type=integer(1, 100_000), default=10, help="strongest images per map (default 10, paper 004)"
    )
    parser.add_argument(
        "--split", choices=("train", "test"), default="train", help="images to rank (default train)"
    )
    add_output_arguments(
        parser,
        plot="images labelled per unit, candidates and b_min marked",
        json="print the result (with every image's label) as JSON",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup, device = prepare_measurement(args)
    data, model, size = setup.data, setup.model, setup.input_size
    analysis = analyze(
        model, size, in_channels=args.in_channels, leaf_modules=args.leaf_module, flops=False, name=args.model
    )
    split = data.train_plain if args.split == "train" else data.test
    batches = loader(split, batch_size=max(args.batch_size, 128), workers=loader_workers(args))
    relevance = compute_relevance(model, analysis, batches, maps=args.maps, top=args.top, device=device)
    result = {"model": args.model, "data": data.name, "split": args.split, **relevance.to_json(analysis)}
    write_report(args, result)
    if args.plot:
        plot_relevance(relevance, analysis, args.plot, title=f"{args.model} on {data.name} ({args.split})")
        status(f"wrote {args.plot}")
    if args.json:
        print_json(result)
        return 0
    candidates = set(relevance.candidates())
    rows = [
        [str(i), u.name, "yes" if u.skippable else "no", str(int(relevance.relevant[i].sum())), str(n),
         "candidate" if u.name in candidates else ""]
        for i, (u, n) in enumerate(zip(relevance.units, relevance.counts, strict=True))
    ]  # fmt: skip
    print(render_table(["label", "unit", "skippable", "relevant to", "labelled", ""], rows, align="><<>><"))
    print(
        f"\n{relevance.labelled} of {len(relevance.labels)} images labelled ({args.maps} maps x {args.top} "
        f"images per unit); border layer b_min {analysis.border_layer_min or 'none'}"
    )
    if candidates:
        print("removal candidates (label under 2 % of the labelled images): " + ", ".join(sorted(candidates)))
    return 0
