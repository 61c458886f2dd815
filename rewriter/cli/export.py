"""``rewriter export``: a model file (or any model) as a torch.export program or an ONNX model, checked."""

from __future__ import annotations

import argparse

from ..engine.exporting import check_exportable, check_format, export
from ._common import check_outputs, input_size_of, print_json, request_of, status
from ._conventions import EXPORT_FORMATS, add_format_argument, add_latency_argument, output_format
from ._parser import add_input_arguments, add_model_arguments, command_parser

DESCRIPTION = """\
Export a model for deployment without rewriter: a torch.export program (OUT.pt2) or an ONNX model
(OUT.onnx), with a dynamic batch dimension. The export is loaded back in its own runtime and run against
the PyTorch model on random inputs at two batch sizes; the largest difference must stay within a bound,
else nothing is written (the checks of `rewriter rewrite --format`). A model that computes per image what
no static graph can (a routed model) is refused with the reason.
"""

EPILOG = """\
examples:
  rewriter export r18-32.pt -o r18-32.onnx            # a model file knows its input size
  rewriter export r18-32.pt -o r18-32.pt2 --json
  rewriter export cifar_vgg16 --input-size 32 -o vgg16.onnx
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers, parents, "export", description=DESCRIPTION, epilog=EPILOG,
        help="export a model file (or any model) to ONNX or a torch.export program, checked against PyTorch",
    )  # fmt: skip
    add_model_arguments(parser)
    add_input_arguments(parser, required=False, note=" (default: a model file's own)")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", required=True, metavar="OUT.onnx|OUT.pt2", help="the file to write")
    add_format_argument(out, choices=EXPORT_FORMATS, help="pt2: a torch.export program, onnx: an ONNX model")
    out.add_argument("--force", action="store_true", help="overwrite an existing output file")
    out.add_argument("--json", action="store_true", help="print the export's checks as one JSON object")
    add_latency_argument(out, default=True, what="the export in its runtime")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fmt = output_format(args.output, args.format, choices=EXPORT_FORMATS)
    check_outputs(args, {"-o": args.output})
    check_format(args.output, fmt)
    check_exportable(fmt)
    request = request_of(args)
    size = input_size_of(args, request)
    model, _ = request.load()
    exported = export(
        model, args.output, fmt, input_size=size, in_channels=args.in_channels, overwrite=args.force,
        latency=args.latency,
    )  # fmt: skip
    if args.json:
        print_json(exported.to_json())
    else:
        print(exported.format())
    status(f"wrote {args.output}")
    return 0
