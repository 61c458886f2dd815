"""``rewriter probe``: logistic regression probes on every conv and linear layer, against the border layers."""

from __future__ import annotations

import argparse
from typing import Any

from .._text import render_table
from ..lab.probes import ProbeReport, run_probes
from ..render.plots import plot_probes
from ._common import analysis_or_none, prepare_measurement, print_json, status, write_report
from ._parser import add_measuring_arguments, add_output_arguments, command_parser, integer

DESCRIPTION = """\
Fit a logistic regression probe on the output of every conv and linear layer (paper 000 II-A,
dissertation 2.4): the output is average-pooled to at most 4x4, flattened, standardised, and a
multinomial logistic regression is fitted on the training split and scored on the test split. Where the
probe accuracy stops rising, the layers after contribute little; paper 000 finds that point at the border
layer. The saturation of each layer is measured on the same images and plotted with the probes.

Every layer's features come from one forward pass over each split (the saturation and the model's
accuracy from the same passes); a layer with more features than training images is fitted on the
coordinates of the images in their span, which gives the same probe in a fraction of the time. Progress is
shown per pass, per layer and per L-BFGS iteration.
"""

EPILOG = """\
examples:
  rewriter probe vgg16.pt --data cifar10:~/data/cifar10 --plot probes.png
  rewriter probe resnet18 --data synthetic --epochs 3 --max-samples 1000 --json
"""


def add_parser(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    parser = command_parser(
        subparsers,
        parents,
        "probe",
        help="logistic regression probe accuracy of every conv and linear layer",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_measuring_arguments(parser)
    parser.add_argument(
        "--max-samples",
        type=integer(2, 10_000_000),
        default=5000,
        metavar="N",
        help="images per split the probes are fitted and scored on (default %(default)s)",
    )
    parser.add_argument(
        "--memory-mb",
        type=integer(16, 1 << 20),
        default=2048,
        metavar="MB",
        help="pooled activations held at once; more layers per pass over the data (default %(default)s)",
    )
    add_output_arguments(parser, plot="probe accuracy and saturation per layer, borders marked")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    setup, device = prepare_measurement(args)
    data, model, size = setup.data, setup.model, setup.input_size
    probes = run_probes(
        model, data.train_plain, data.test, data.num_classes, max_samples=args.max_samples, device=device,
        batch_size=max(args.batch_size, 128), memory_mb=args.memory_mb, progress=True, saturation=True,
    )  # fmt: skip
    saturation = probes.saturation
    analysis = analysis_or_none(model.cpu(), size, args)
    result = {
        "model": args.model,
        "data": data.name,
        **probes.to_json(analysis),
        "s_mu": round(saturation.mean, 6),
        "saturation": {layer.name: round(layer.saturation, 6) for layer in saturation.layers},
    }
    write_report(args, result)
    if args.plot:
        title = f"{args.model} on {data.name} at {size[0]}x{size[1]}"
        plot_probes(probes, saturation, analysis, args.plot, title=title)
        status(f"wrote {args.plot}")
    if args.json:
        print_json(result)
    else:
        _print_table(probes, result, analysis)
    return 0


def _print_table(probes: ProbeReport, result: dict[str, Any], analysis: Any) -> None:
    rows = [
        [layer.name, layer.type, str(layer.features), f"{layer.train_accuracy:.1%}", f"{layer.test_accuracy:.1%}",
         f"{result['saturation'].get(layer.name, float('nan')):.1%}",
         {True: "yes", False: "NO", None: "-"}[row.get("productive")]]
        for layer, row in zip(probes.layers, result["layers"], strict=True)
    ]  # fmt: skip
    headers = ["layer", "type", "features", "probe train", "probe test", "saturation", "productive"]
    print(render_table(headers, rows, align="<<>>>><"))
    print(
        f"\nmodel test accuracy {probes.model_accuracy:.1%}; probes fitted on {probes.train_images} and scored on "
        f"{probes.test_images} images"
    )
    if analysis is not None:
        print(
            f"border layer b_min {analysis.border_layer_min or 'none'}, b_max {analysis.border_layer_max or 'none'}"
        )
