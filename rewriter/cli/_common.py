"""Arguments and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from torch import nn

from .._errors import AnalysisError
from ..sources import ModelSpec, load_model, parse_model_args

MODEL_HELP = (
    "a torchvision classification model (resnet18), a built-in paper architecture (cifar_vgg16, mpnet18; "
    "`rewriter models` lists all), package.module:callable, or a model file"
)


def add_model_arguments(parser: argparse.ArgumentParser, *, model_help: str = MODEL_HELP) -> None:
    parser.add_argument("model", metavar="MODEL", help=model_help)
    group = parser.add_argument_group("model source")
    group.add_argument(
        "--num-classes", type=int, metavar="N", help="classes of the head (default: the model's)"
    )
    group.add_argument(
        "--model-arg",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="argument for the model factory, repeatable; values are read as YAML (width=32, pretrained=false)",
    )
    group.add_argument("--weights", metavar="FILE", help="state dict to load (read with weights_only=True)")
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow MODEL to be a file holding a whole pickled module (unpickling runs code from the file)",
    )


def add_input_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--input-size",
        required=required,
        metavar="SIZE",
        help="training resolution: 32, or HEIGHT,WIDTH (64,48) or HEIGHTxWIDTH"
        + ("" if required else "; overrides a recipe's input_size"),
    )
    parser.add_argument("--in-channels", type=int, default=3, metavar="C", help="image channels (default 3)")
    parser.add_argument(
        "--leaf-module",
        action="append",
        default=[],
        metavar="CLASS",
        help="treat modules of this class as opaque when torch.fx cannot trace them (repeatable)",
    )


def load_from_args(args: argparse.Namespace) -> tuple[nn.Module, ModelSpec]:
    return load_model(
        args.model,
        num_classes=args.num_classes,
        model_args=parse_model_args(args.model_arg),
        weights=args.weights,
        trust_pickle=args.trust_pickle,
    )


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[,x×]\s*(\d+)\s*)?$")


def parse_size(text: str, what: str = "--input-size") -> tuple[int, int]:
    """``"32"`` -> (32, 32); ``"64,48"`` or ``"64x48"`` -> (64, 48) as (height, width)."""
    match = _SIZE.match(str(text))
    if not match or int(match.group(1)) <= 0 or (match.group(2) is not None and int(match.group(2)) <= 0):
        raise AnalysisError(f"{what} expects a positive size like 32, 64,48 or 64x48; got '{text}'")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    return h, w


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def status(message: str) -> None:
    """Progress and notes go to stderr so that stdout stays clean for --json."""
    print(message, file=sys.stderr)
