"""``rewriter analyze``: receptive fields, border layers, FLOPs and parameters of one model."""

from __future__ import annotations

import argparse

from ..analysis.flops_meta import FLOP_BACKENDS
from ..analysis.traced_model import analyze
from ..render.plots import plot_receptive_fields
from ..render.tables import format_analysis, format_information_field
from ._common import check_outputs, input_size_of, print_json, request_of, status
from ._parser import add_input_arguments, add_model_arguments, command_parser, size

DESCRIPTION = """\
Compute every layer's receptive field (r_min and r_max over all paths, per axis) for the input size you
will train at, and find the border layers: a conv or pooling layer whose input is based on a receptive
field larger than the image on every axis cannot integrate new information (paper 000, section IV).
b_min is the first layer of the final run of such layers under r_min, b_max the same under r_max.
"""

EPILOG = """\
examples:
  rewriter analyze resnet18 --input-size 32
  rewriter analyze cifar_vgg16 --input-size 32 --json > vgg16.json
  rewriter analyze mypkg.nets:build --model-arg width=32 --input-size 64,48 --plot rf.png
  rewriter analyze resnet34 --input-size 32 --border-rule output     # the dissertation's ResNet b_min
  rewriter analyze resnet18-trunc.pt                                  # a model file knows its input size
  rewriter analyze efficientnet_b0 --input-size 224 --flops-backend fvcore   # FLOPs from fvcore itself
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "analyze",
        help="receptive fields and border layers of a model at an input size",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_model_arguments(parser)
    add_input_arguments(parser, required=False, note=" (default: a model file's own)")
    parser.add_argument(
        "--border-rule",
        choices=("input", "output"),
        default="input",
        help="test the receptive field of a layer's input (r_{l-1} > i, the papers' definition; default) or of "
        "its own output (reproduces the dissertation's ResNet b_min)",
    )
    parser.add_argument(
        "--feature-size",
        type=size,
        metavar="SIZE",
        help="test against this size instead of the input (objects smaller than the image), e.g. 16",
    )
    parser.add_argument("--json", action="store_true", help="print the analysis as one JSON object")
    parser.add_argument(
        "--information-field", action="store_true",
        help="also print the stages, their units and each unit's Information Field and IF gain (paper 003)",
    )  # fmt: skip
    parser.add_argument("--plot", metavar="FILE.png", help="write a plot of receptive field per layer")
    parser.add_argument("--force", action="store_true", help="overwrite an existing plot file")
    parser.add_argument("--no-flops", action="store_true", help="do not count FLOPs")
    parser.add_argument(
        "--flops-backend",
        choices=FLOP_BACKENDS,
        default="meta",
        help="count FLOPs in the shape pass on the meta device (meta, default: no arithmetic) or with fvcore "
        "(a jit trace and a real forward pass; the reference). Both follow fvcore's convention",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--plot": args.plot})
    request = request_of(args)
    input_size = input_size_of(args, request)
    model, _ = request.load()
    result = analyze(
        model,
        input_size,
        border_rule=args.border_rule,
        feature_size=args.feature_size,
        in_channels=args.in_channels,
        leaf_modules=args.leaf_module,
        flops=not args.no_flops,
        flops_backend=args.flops_backend,
        name=args.model,
    )
    if args.plot:
        plot_receptive_fields(result, args.plot)
        status(f"wrote {args.plot}")
    if args.json:
        print_json(result.to_json())
    else:
        print(format_analysis(result))
        if args.information_field:
            print("\n" + format_information_field(result))
    return 0
