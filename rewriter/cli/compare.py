"""``rewriter compare``: two models side by side at one input size."""

from __future__ import annotations

import argparse
import dataclasses

from .._errors import UsageError
from ..engine.report import Report, measure
from ..lab.model_request import ModelRequest
from ..models.sources import parse_model_args
from ._common import check_outputs, print_json, status, write_report
from ._conventions import add_latency_argument
from ._parser import MAX_CLASSES, add_input_arguments, command_parser, integer

EPILOG = """\
examples:
  rewriter compare resnet18 out.pt --input-size 32 --num-classes 10
  rewriter compare resnet18 out.pt --weights base.pth --num-classes 10     # the input size of out.pt
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "compare",
        help="params, FLOPs, b_min and latency of two models side by side",
        description="Measure two models at the same input size; deltas are B against A. Nothing measured "
        "depends on the weights; --weights is checked against the model (a mismatch is an error).",
        epilog=EPILOG,
    )
    parser.add_argument("model_a", metavar="A", help="a model name, import spec, or model file")
    parser.add_argument("model_b", metavar="B", help="the model to compare with A")
    parser.add_argument(
        "--num-classes", type=integer(1, MAX_CLASSES), metavar="N", help="head size for models given by name"
    )
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="factory argument for models given by name (repeatable)",
    )
    parser.add_argument("--weights", metavar="FILE", help="state dict for A (read with weights_only=True)")
    parser.add_argument("--weights-b", metavar="FILE", help="state dict for B")
    parser.add_argument("--trust-pickle", action="store_true", help="allow pickled model files")
    add_input_arguments(parser, required=False, note=" (default: the size A or B was written for)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.add_argument("--report", metavar="FILE.json", help="also write the JSON to a file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing report file")
    add_latency_argument(parser, default=True, what="both models")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--report": args.report})
    requests = [_request(args, source, weights) for source, weights in
                ((args.model_a, args.weights), (args.model_b, args.weights_b))]  # fmt: skip
    size = args.input_size or _recorded_size(requests)
    rows = []
    for request in requests:
        model, _ = dataclasses.replace(request, input_size=size).load()
        status(f"measuring {request.source}")
        row, _ = measure(
            model, size, label=request.source, in_channels=args.in_channels, leaf_modules=args.leaf_module,
            latency=args.latency,
        )  # fmt: skip
        rows.append(row)
    report = Report(f"{args.model_a} vs {args.model_b}", size, tuple(rows))
    write_report(args, report.to_json())
    if args.json:
        print_json(report.to_json())
    else:
        print(report.format())
    return 0


def _request(args: argparse.Namespace, source: str, weights: str | None) -> ModelRequest:
    """A or B, its file read once; one built by name takes --num-classes and --model-arg."""
    request = ModelRequest(source, weights=weights, trust_pickle=args.trust_pickle).read()
    if request.is_file:
        return request
    return dataclasses.replace(
        request, num_classes=args.num_classes, model_args=parse_model_args(args.model_arg)
    )


def _recorded_size(requests: list[ModelRequest]) -> tuple[int, int]:
    """The input size A's model file records, else B's."""
    recorded = [r.recorded_input_size for r in requests if r.recorded_input_size is not None]
    if not recorded:
        raise UsageError("give --input-size: neither A nor B is a model file that records its input size")
    return recorded[0]
