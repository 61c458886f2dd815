"""``rewriter evaluate``: score a model on the test split of a data source."""

from __future__ import annotations

import argparse

from ..lab.scoring import score
from ._common import check_outputs, device_of, loader_workers, print_json, setup_of, write_report
from ._parser import add_measuring_arguments, command_parser

DESCRIPTION = """\
Score a model (a model file, or any model: built by name its head is sized for the data) on the test split
of --data: top-1 accuracy, mean cross-entropy, accuracy per class and images per second (the whole pass,
loading included), in eval mode without augmentation.
"""

EPILOG = """\
examples:
  rewriter evaluate r18-32.pt --data cifar10:~/data/cifar10
  rewriter evaluate r18-32.pt --data digits --json
  rewriter evaluate model.pt --data imagefolder:~/data/parts --batch-size 128 --report score.json
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers, parents, "evaluate", description=DESCRIPTION, epilog=EPILOG,
        help="score a model on a test split: accuracy, loss, accuracy per class, images/s",
    )  # fmt: skip
    add_measuring_arguments(parser, pretrain=False)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the score as one JSON object")
    out.add_argument("--report", metavar="FILE.json", help="also write the JSON to a file")
    out.add_argument("--force", action="store_true", help="overwrite an existing report")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--report": args.report})
    device = device_of(args)
    setup = setup_of(args)
    result = score(
        setup.model.to(device), setup.data, device=device, batch_size=args.batch_size,
        workers=loader_workers(args),
    )  # fmt: skip
    payload = {"model": args.model, "input_size": list(setup.input_size), **result.to_json()}
    write_report(args, payload)
    if args.json:
        print_json(payload)
    else:
        print(result.format())
    return 0
