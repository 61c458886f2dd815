"""The flags every command spells the same way: the format of the model file ``-o`` writes and the CPU
latency timing. README's "Conventions" table lists them; ``tests/cli/test_conventions.py`` walks every
subcommand's parser and holds each command to them.

- ``--format pt|pt2|onnx`` is the format of the file ``-o`` writes, and defaults to what the name of ``-o``
  says (``.pt2``, ``.onnx``; any other name is a model file, ``pt``). ``export`` writes the deployment
  formats only (``pt2``, ``onnx``). How a command prints its result is ``--json``, never ``--format``.
- ``--latency`` / ``--no-latency`` say whether models are timed on the CPU. The default follows the cost: on
  where a command times a fixed few models (``rewrite``, ``compare``, ``export``, ``train``'s export), off
  where the number of timings grows with a search (``optimize`` times every candidate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import UsageError

MODEL_FORMATS = ("pt", "pt2", "onnx")
EXPORT_FORMATS = ("pt2", "onnx")
_SUFFIXES = {".pt2": "pt2", ".onnx": "onnx"}


def add_format_argument(
    group: argparse._ActionsContainer, *, choices: tuple[str, ...] = MODEL_FORMATS, help: str
) -> None:
    """--format, one of ``choices`` (drawn from MODEL_FORMATS); None when not given (``output_format``)."""
    named = [f"{suffix}: {fmt}" for suffix, fmt in _SUFFIXES.items() if fmt in choices]
    if "pt" in choices:
        named.append("any other name: pt")
    group.add_argument(
        "--format", choices=choices, default=None,
        help=f"{help} (default: what the name of -o says, {'; '.join(named)})",
    )  # fmt: skip


def output_format(output: str | None, given: str | None, *, choices: tuple[str, ...] = MODEL_FORMATS) -> str:
    """--format, else the format the name of -o says (``.pt2``, ``.onnx``; any other name ``pt``).

    Raises:
        UsageError: the name says a format the command does not write (``export -o m.pt``).
    """
    if given is not None:
        return given
    named = _SUFFIXES.get(Path(output).suffix, "pt") if output else "pt"
    if named not in choices:
        names = " or ".join(f"OUT{suffix}" for suffix, fmt in _SUFFIXES.items() if fmt in choices)
        raise UsageError(f"-o {output}: name the export {names} (the name says the format)")
    return named


def add_latency_argument(group: argparse._ActionsContainer, *, default: bool, what: str) -> None:
    """--latency / --no-latency: whether ``what`` is timed on the CPU, on by ``default`` or not."""
    group.add_argument(
        "--latency", action=argparse.BooleanOptionalAction, default=default,
        help=f"time {what} on the CPU (default: {'on' if default else 'off'})",
    )  # fmt: skip
