"""``rewriter sweep``: the border, the unproductive layers and the cost per input resolution."""

from __future__ import annotations

import argparse

from .._errors import RewriterError
from ..analysis.sizes import parse_size
from ..optimize import parse_sizes, sweep
from ..render import format_sweep, plot_sweep
from ._common import check_outputs, load_from_args, print_json, status, write_report
from ._flags import in_common_flags
from ._parser import add_model_arguments, channels, command_parser

DESCRIPTION = """\
How the border moves with the resolution (dissertation 8.5 and D3): too small an input puts the unproductive
tail at the output, too large one leaves the last layers seeing only part of the image. For every size:
b_min and b_max, the number of unproductive layers, params and FLOPs, the last layer's r_min against the
input, what truncation at the border would keep (params, FLOPs), and advice; the model is traced once and
analyzed per size on the meta device. The summary names the size whose last layer's r_min comes closest to
the input with every layer productive ("close to the receptive field size of the final layer", 9.4.2).
"""

EPILOG = """\
examples:
  rewriter sweep resnet50 --input-size 32:512:32 --plot sweep.png
  rewriter sweep cifar_vgg16 --input-size 16,32,64,128 --json > sweep.json

--input-size is START:STOP:STEP (STOP included) or a comma list of square sizes.
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers, parents, "sweep", description=DESCRIPTION, epilog=EPILOG,
        help="border layers, unproductive layers and cost per input resolution",
    )  # fmt: skip
    add_model_arguments(parser)
    parser.add_argument("--input-size", type=sizes, required=True, metavar="SIZES",
                        help="32:512:32 or 32,64,128 (square sizes)")  # fmt: skip
    parser.add_argument(
        "--in-channels", type=channels, default=3, metavar="C", help="image channels (default 3)"
    )
    parser.add_argument("--leaf-module", action="append", default=[], metavar="CLASS",
                        help="treat modules of this class as opaque when torch.fx cannot trace them")  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the sweep as one JSON object")
    out.add_argument("--report", metavar="FILE.json", help="also write the JSON to a file")
    out.add_argument("--plot", metavar="FILE.png", help="plot unproductive layers and FLOPs per size")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    parser.set_defaults(run=run)


def sizes(text: str) -> list[int]:
    """An argparse type: a range or a list of square sizes, each within the bound in force."""
    try:
        found = parse_sizes(text)
        for side in found:
            parse_size(side, "size")
    except RewriterError as err:
        raise argparse.ArgumentTypeError(in_common_flags(err).removeprefix("size: ")) from None
    return found


def run(args: argparse.Namespace) -> int:
    check_outputs(args, {"--report": args.report, "--plot": args.plot})
    model, _ = load_from_args(args)
    result = sweep(
        model, args.input_size, in_channels=args.in_channels, leaf_modules=args.leaf_module, name=args.model
    )
    write_report(args, result.to_json())
    if args.plot:
        plot_sweep(result, args.plot)
        status(f"wrote {args.plot}")
    if args.json:
        print_json(result.to_json())
    else:
        print(format_sweep(result))
    return 0
