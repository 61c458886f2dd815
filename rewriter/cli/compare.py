"""``rewriter compare``: two models side by side at one input size."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.report import Report, measure
from ..models.sources import load_model, parse_model_args
from ._common import add_input_arguments, command_parser, parse_size, print_json, status


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "compare",
        help="params, FLOPs, b_min and latency of two models side by side",
        description="Measure two models at the same input size; deltas are B against A.",
        epilog="example:\n  rewriter compare resnet18 out.pt --input-size 32",
    )
    parser.add_argument("model_a", metavar="A", help="a model name, import spec, or model file")
    parser.add_argument("model_b", metavar="B", help="the model to compare with A")
    parser.add_argument("--num-classes", type=int, metavar="N", help="head size for models given by name")
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="factory argument for models given by name (repeatable)",
    )
    parser.add_argument("--trust-pickle", action="store_true", help="allow pickled model files")
    add_input_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.input_size)
    rows = []
    for source in (args.model_a, args.model_b):
        is_file = Path(source).is_file()
        model, _ = load_model(
            source,
            num_classes=None if is_file else args.num_classes,
            model_args=None if is_file else parse_model_args(args.model_arg),
            trust_pickle=args.trust_pickle,
        )
        status(f"measuring {source}")
        row, _ = measure(
            model,
            size,
            label=source,
            in_channels=args.in_channels,
            leaf_modules=args.leaf_module,
            latency=not args.no_latency,
        )
        rows.append(row)
    report = Report(f"{args.model_a} vs {args.model_b}", size, tuple(rows))
    if args.json:
        print_json(report.to_json())
    else:
        print(report.format())
    return 0
