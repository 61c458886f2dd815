"""Arguments and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import AnalysisError
from ..models.sources import ModelSpec, load_model, load_model_for_classes, parse_model_args

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


def add_input_arguments(parser: argparse.ArgumentParser, *, required: bool = True, note: str = "") -> None:
    parser.add_argument(
        "--input-size",
        required=required,
        metavar="SIZE",
        help="training resolution: 32, or HEIGHT,WIDTH (64,48) or HEIGHTxWIDTH" + note,
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


SIZE_NOTE = " (default: a model file's own, else the data's: 32 for CIFAR, synthetic and digits)"
DATA_HELP = (
    "cifar10:DIR or cifar100:DIR (the python version of the batches), imagefolder:DIR (class folders, with "
    "train/ and test/ or split 80/20), synthetic[:N] (generated shapes, no files), digits[:N] (scikit-learn's "
    "scanned digits)"
)


def add_data_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, metavar="SPEC", help=DATA_HELP)
    group.add_argument(
        "--download", action="store_true", help="fetch CIFAR into DIR if it is not there (needs internet)"
    )
    group.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)"
    )
    group.add_argument(
        "--workers", type=int, default=0, metavar="N", help="DataLoader worker processes (default 0)"
    )
    group.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)",
    )


def resolve_input_size(args: argparse.Namespace, native: tuple[int, int] | None = None) -> tuple[int, int]:
    """--input-size, else the size a model file was written for, else the data's own resolution."""
    from ..models.modelfile import recorded_input_size

    if args.input_size:
        return parse_size(args.input_size)
    recorded = recorded_input_size(args.model) if Path(args.model).is_file() else None
    if recorded is not None:
        return recorded
    if native is not None:
        return native
    raise AnalysisError("give --input-size: the resolution you train at (32, or HEIGHT,WIDTH)")


def device_of(args: argparse.Namespace) -> torch.device:
    if args.device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(args.device)
    except RuntimeError as err:
        raise AnalysisError(f"--device: {err}") from err


def load_data_and_model(args: argparse.Namespace) -> tuple[Any, nn.Module, ModelSpec, tuple[int, int]]:
    """The data of ``--data`` and the model, its head sized for the data's classes when built by name.

    Raises:
        DataError: the model's outputs do not match the data's classes.
    """
    from ..lab.data import DataError, load_data, native_size, parse_data_spec

    spec = parse_data_spec(args.data)
    size = resolve_input_size(args, native_size(spec))
    status(f"reading data {spec} at {size[0]}x{size[1]}")
    data = load_data(spec, size, download=args.download)
    model, model_spec = model_for_data(args, data)
    outputs = _output_classes(model, data.train[0][0])
    if outputs is not None and outputs != data.num_classes:
        if Path(args.model).is_file() or args.weights:
            hint = "rewrite it with --num-classes first"
        elif args.num_classes is not None:
            hint = f"drop --num-classes {args.num_classes}"
        else:
            hint = f"build it with a {data.num_classes}-class head (e.g. --model-arg num_classes=...)"
        raise DataError(f"{args.model} outputs {outputs} classes but {spec} has {data.num_classes}; {hint}")
    return data, model, model_spec, size


def model_for_data(args: argparse.Namespace, data: Any) -> tuple[nn.Module, ModelSpec]:
    """The model of the arguments; built fresh by name (no file, no weights, no --num-classes), its head
    gets the data's classes, unless its builder takes no num_classes (then it is built as it is)."""
    if args.num_classes is not None or Path(args.model).is_file() or args.weights:
        return load_from_args(args)
    model, spec = load_model_for_classes(
        args.model,
        data.num_classes,
        model_args=parse_model_args(args.model_arg),
        trust_pickle=args.trust_pickle,
    )
    args.num_classes = spec.num_classes
    return model, spec


def _output_classes(model: nn.Module, example: Any) -> int | None:
    from ..analysis.modes import eval_mode

    try:
        with eval_mode(model), torch.no_grad():
            out = model(example[None])
    except Exception as err:
        raise AnalysisError(
            f"the model does not run on the data's images {tuple(example.shape)}: {str(err).splitlines()[0]}"
        ) from err
    return out.shape[1] if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def command_parser(
    subparsers: argparse._SubParsersAction,
    parents: list[argparse.ArgumentParser],
    name: str,
    *,
    help: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose --help keeps the line breaks of its description and examples."""
    return subparsers.add_parser(
        name, parents=parents, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip


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
    """--json, --report FILE.json and --plot FILE.png, with what the JSON and the plot hold."""
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help=json)
    out.add_argument("--report", metavar="FILE.json", help="also write the JSON to a file")
    out.add_argument("--plot", metavar="FILE.png", help=plot)


def prepare_measurement(args: argparse.Namespace) -> tuple[Any, nn.Module, tuple[int, int], torch.device]:
    """For a command that measures a model on data: refuse unwritable outputs before any work, read the
    data and the model, train it first if asked, and move it to the device. Returns data, model, the input
    size and the device."""
    from .._files import check_target

    for target in (args.plot, args.report):
        if target:
            check_target(target, force=True)
    data, model, _, size = load_data_and_model(args)
    pretrain(args, model, data)
    device = device_of(args)
    model.to(device)
    return data, model, size, device


def add_pretrain_argument(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quick training first (for models that are not trained yet)")
    group.add_argument(
        "--epochs",
        type=int,
        default=0,
        metavar="N",
        help="train for N epochs first with `rewriter train`'s schedule; nothing is saved (default 0)",
    )
    group.add_argument(
        "--lr", type=float, default=0.1, help="learning rate of that training (default 0.1, paper 000)"
    )


def pretrain(args: argparse.Namespace, model: nn.Module, data: Any) -> None:
    """Train ``model`` in place for ``--epochs`` epochs (nothing is saved) when asked to."""
    from ..lab.training import TrainConfig, train

    if args.epochs <= 0:
        return
    status(f"training for {args.epochs} epochs first (use `rewriter train` to keep the result)")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, workers=args.workers)
    result = train(model, data, config, device=device_of(args), on_epoch=epoch_reporter(config, data))
    status(f"test accuracy after {args.epochs} epochs: {result.test_accuracy:.2%}")


def epoch_reporter(config: Any, data: Any) -> Any:
    """A per-epoch status line; after the first epoch, a hint if the loss is worse than guessing."""
    import math

    chance = math.log(data.num_classes)

    def report(record: Any) -> None:
        status(
            f"epoch {record.epoch + 1}/{config.epochs}: loss {record.loss:.4f}, train accuracy "
            f"{record.accuracy:.2%}, test accuracy {record.test_accuracy:.2%}, lr {record.lr:g}"
        )
        if record.epoch == 0 and record.loss > 1.5 * chance:
            status(
                f"note: the loss is above that of guessing ({chance:.2f}); the learning rate {config.lr:g} may "
                "be too high for this data (a small set has few steps per epoch): try --lr 0.01"
            )

    return report


def analysis_or_none(model: nn.Module, size: tuple[int, int], args: argparse.Namespace) -> Any:
    """The receptive-field analysis for plots and tables, or None with a note if the model cannot be traced."""
    from .._errors import RewriterError
    from ..analysis.analyzer import analyze

    try:
        return analyze(
            model,
            size,
            in_channels=args.in_channels,
            leaf_modules=args.leaf_module,
            flops=False,
            name=args.model,
        )
    except RewriterError as err:
        status(f"note: no receptive fields to show ({err})")
        return None
