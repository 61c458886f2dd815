"""The argument parser of every subcommand: one-line usage errors, typed arguments with declared ranges,
and the groups of arguments several commands share.

Every numeric argument has its range in its type (``integer(1, 4096)``); a value outside it, a size that
is not one, or one over the bound (``--allow-large`` lifts it) is a usage error: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from .._errors import RewriterError
from ..analysis.sizes import MAX_CLASSES, check_channels, parse_size
from ._flags import in_common_flags
from ._log import log

MODEL_HELP = (
    "a torchvision classification model (resnet18), a built-in paper architecture (cifar_vgg16, mpnet18; "
    "`rewriter models` lists all), timm:NAME (`rewriter models --timm`), package.module:callable, or a model "
    "file"
)
SIZE_NOTE = (
    " (default: a model file's own, else the data's: 32 for CIFAR, synthetic and digits, an image folder's "
    "own when all its images share one size)"
)
DATA_HELP = (
    "cifar10:DIR or cifar100:DIR (the python version of the batches), imagefolder:DIR (class folders, with "
    "train/ and test/ or split 80/20), synthetic[:N] (generated shapes, no files), digits[:N] (scikit-learn's "
    "scanned digits)"
)
MAX_BATCH = 65_536


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2), pointing at --help."""

    def error(self, message: str) -> NoReturn:
        message = message if len(message) <= 400 else message[:397] + "..."  # argparse quotes the value whole
        log(f"{message} (see `{self.prog} --help`)", "error")
        sys.exit(2)


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int with ``low <= value <= high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low or (high is not None and value > high):
            shown = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {shown}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def real(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite float in the range (``low_open``/``high_open`` exclude the ends)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            shown = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"expected a finite number in {shown}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


_RATE = real(0, 10, low_open=True)


def learning_rate(text: str) -> float | str:
    """An argparse type: a learning rate in (0, 10], or ``auto`` (a range test picks it)."""
    return text if text == "auto" else _RATE(text)


def add_rate_arguments(group: argparse._ActionsContainer, default: float, auto: str) -> None:
    """--lr (a rate, or ``auto``: ``auto`` says what the range test runs on) and --warmup-epochs."""
    group.add_argument(
        "--lr", type=learning_rate, default=default,
        help=f"initial learning rate in (0, 10], or auto: {auto} (default %(default)s, paper 000)",
    )  # fmt: skip
    group.add_argument(
        "--warmup-epochs", type=integer(0, 100_000), default=1, metavar="N",
        help="epochs over which the rate rises linearly from 0 (default 1; 0: paper 000's schedule)",
    )  # fmt: skip


def size(text: str) -> tuple[int, int]:
    """An argparse type: 32, 64,48 or 64x48, within the bound in force (``--allow-large`` lifts it)."""
    try:
        return parse_size(text, "size")
    except RewriterError as err:
        raise argparse.ArgumentTypeError(in_common_flags(err).removeprefix("size: ")) from None


def channels(text: str) -> int:
    """An argparse type: image channels, positive and within the bound in force."""
    value = integer(1)(text)
    try:
        return check_channels(value, "channels")
    except RewriterError as err:
        raise argparse.ArgumentTypeError(in_common_flags(err).removeprefix("channels: ")) from None


def data_spec(text: str) -> str:
    """An argparse type: a ``--data`` value that parses (kind, folder, a bounded image count)."""
    from ..lab.data import parse_data_spec

    try:
        parse_data_spec(text)
    except RewriterError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def command_parser(
    subparsers: argparse._SubParsersAction,
    parents: list[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose --help keeps the line breaks of its description and examples (and which its
    namespace names, so that an argument it does not know is refused pointing at its own --help)."""
    parser = subparsers.add_parser(
        name, parents=parents, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.set_defaults(command_parser=parser)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, *, model_help: str = MODEL_HELP) -> None:
    parser.add_argument("model", metavar="MODEL", help=model_help)
    group = parser.add_argument_group("model source")
    group.add_argument(
        "--num-classes",
        type=integer(1, MAX_CLASSES),
        metavar="N",
        help="classes of the head (default: the model's)",
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


def add_input_arguments(parser: argparse.ArgumentParser, *, required: bool = True, note: str = "") -> None:
    parser.add_argument(
        "--input-size",
        type=size,
        required=required,
        metavar="SIZE",
        help="training resolution: 32, or HEIGHT,WIDTH (64,48) or HEIGHTxWIDTH" + note,
    )
    parser.add_argument(
        "--in-channels", type=channels, default=3, metavar="C", help="image channels (default %(default)s)"
    )
    parser.add_argument(
        "--leaf-module",
        action="append",
        default=[],
        metavar="CLASS",
        help="treat modules of this class as opaque when torch.fx cannot trace them (repeatable)",
    )


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", type=data_spec, required=required, metavar="SPEC", help=DATA_HELP)
    group.add_argument(
        "--download", action="store_true", help="fetch CIFAR into DIR if it is not there (needs internet)"
    )
    group.add_argument(
        "--batch-size",
        type=integer(1, MAX_BATCH),
        default=64,
        metavar="N",
        help="images per batch (default 64)",
    )
    group.add_argument(
        "--train-samples", type=integer(1, 100_000_000), metavar="N",
        help="train on a stratified sample of N training images (every class in proportion, drawn with seed 0; "
        "default: all)",
    )  # fmt: skip
    group.add_argument(
        "--test-samples", type=integer(1, 100_000_000), metavar="N",
        help="score a stratified sample of N test images (default: all)",
    )  # fmt: skip
    group.add_argument(
        "--data-memory", type=real(0, 1024), default=2.0, metavar="GB",
        help="an image folder whose images fit in this many GiB (as uint8) is decoded once, cached on disk "
        "(in $REWRITER_CACHE, default ~/.cache/rewriter) and held in memory; a larger one is read from disk "
        "every epoch (default 2)",
    )  # fmt: skip
    group.add_argument(
        "--loader-workers",
        type=integer(0, 1024),
        default=0,
        metavar="N",
        help=f"DataLoader worker processes, at most the {cores()} cores (default 0: load in this process)",
    )
    group.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)",
    )


def add_executor_arguments(
    parser: argparse.ArgumentParser, group: argparse._ActionsContainer, what: str
) -> None:
    """--executor, and the Ray group (--address, --cpus-per-cell, --gpus-per-cell, --connect-timeout) of
    a command that trains ``what`` (cells, candidates) in parallel; ``executor_of`` reads them."""
    group.add_argument("--executor", choices=("serial", "processes", "ray"),
                       help=f"where {what} train: here, in --workers processes, or as Ray tasks "
                       "(default: processes if --workers > 1, else serial)")  # fmt: skip
    ray = parser.add_argument_group("Ray (--executor ray; pip install 'rewriter[ray]')")
    ray.add_argument("--address", metavar="ADDR",
                     help="the Ray cluster: auto (the one `ray start --head` started) or HOST:PORT "
                     "(default: a local instance started for the run)")  # fmt: skip
    ray.add_argument("--cpus-per-cell", type=real(0, 1024, low_open=True), default=1.0, metavar="N",
                     help="CPUs a Ray task takes (default 1)")  # fmt: skip
    ray.add_argument("--gpus-per-cell", type=real(0, 64), default=0.0, metavar="N",
                     help="GPUs a Ray task takes (default 0)")  # fmt: skip
    ray.add_argument("--connect-timeout", type=real(0, 3600, low_open=True), default=30.0, metavar="S",
                     help="seconds to wait for the cluster at --address to answer (default 30)")  # fmt: skip


def add_precision_argument(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="number format of training and evaluation: auto (default) takes bf16 + channels_last where the "
        "device computes bf16 natively (AMX-BF16 or AVX512-BF16 CPUs, GPUs from Ampere on), fp16 with loss "
        "scaling on other GPUs, else fp32; says which it took",
    )  # fmt: skip


def add_pretrain_argument(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quick training first (for models that are not trained yet)")
    group.add_argument(
        "--epochs",
        type=integer(0, 100_000),
        default=0,
        metavar="N",
        help="train for N epochs first with `rewriter train`'s schedule; nothing is saved (default 0)",
    )
    group.add_argument(
        "--lr",
        type=real(0, 10, low_open=True),
        default=0.1,
        help="learning rate of that training (default 0.1, paper 000)",
    )
    add_precision_argument(group)


def add_measuring_arguments(parser: argparse.ArgumentParser, *, pretrain: bool = True) -> None:
    """What every command that measures a model on data takes: the model, an input size (the data's own by
    default), the data, and (``pretrain``) a quick training first."""
    add_model_arguments(parser)
    add_input_arguments(parser, required=False, note=SIZE_NOTE)
    add_data_arguments(parser)
    if pretrain:
        add_pretrain_argument(parser)


def add_output_arguments(
    parser: argparse.ArgumentParser, *, plot: str, json: str = "print the result as one JSON object"
) -> None:
    """--json, --report FILE.json, --plot FILE.png and --force, with what the JSON and the plot hold."""
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help=json)
    out.add_argument("--report", metavar="FILE.json", help="also write the JSON to a file")
    out.add_argument("--plot", metavar="FILE.png", help=plot)
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
