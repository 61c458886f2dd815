"""The ``rewriter`` command line: one module per subcommand, each only calling the library.

``main(argv) -> int`` returns the exit code (the table is in ``rewriter._errors``: 0 success, 1 a handled
failure, 2 a usage error, 3 a negative verdict, 4 an invalid input file, 5 an unexpected error, 130
interrupted, 143 terminated). ``main`` is the one place where any exception becomes one line on stderr
(``--debug`` shows the traceback). Nothing heavy is imported before ``main`` runs, so an interrupt during
start-up is handled like any other; SIGTERM is handled like SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from .._errors import (
    EXIT_FAILURE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    RewriterError,
    RewriterWarning,
    params_of,
)
from .._text import one_line
from .._version import __version__
from ._log import log, logging_to_stderr

SUBCOMMANDS = (
    "optimize", "analyze", "sweep", "rewrite", "train", "saturation", "probe", "relevance", "study", "compare",
    "strategies", "models", "export", "evaluate",
)  # fmt: skip


def common_parser() -> argparse.ArgumentParser:
    """The options every command takes (a parent of each command's parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    common.add_argument(
        "--quiet", action="store_true", help="no progress bars and no status lines (warnings and errors stay)"
    )
    common.add_argument(
        "--log-json",
        action="store_true",
        help="stderr as JSON lines (time, command, level, message), no bars",
    )
    common.add_argument(
        "--allow-large",
        action="store_true",
        help="lift the bounds on input sizes (2048 px per side) and image channels (64)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    from ._parser import Parser

    common = common_parser()
    parser = Parser(
        prog="rewriter",
        description="Analyze the receptive fields of a CNN for your input size and rewrite it before training; "
        "train it, and measure saturation and probes to check the prediction.",
        epilog="Run `rewriter COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"rewriter {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers, [common])
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program runs so that it stops like on Ctrl-C (cleaning up as it goes)."""


def main(argv: Sequence[str] | None = None) -> int:
    entry = argv is None  # the process's own command line: also exit with the code on a late signal
    args = list(sys.argv[1:] if entry else argv)
    try:
        with _sigterm_as_interrupt():
            return _main(args)
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # the one place an unexpected error becomes one line
        if "--debug" in args:
            raise
        print(f"error: {unexpected(err)}; run with --debug for the traceback", file=sys.stderr)
        return EXIT_FAILURE if isinstance(err, OSError) else EXIT_INTERNAL
    finally:
        if entry:
            _exit_on_late_signals()


def unexpected(err: BaseException) -> str:
    """One bounded line for an exception that is not ours: what the system said for an OSError (a full
    disk, a name too long, a read-only folder), else the type, message and place."""
    from .._untrusted import shown

    if isinstance(err, OSError) and err.strerror:
        name = f": {shown(str(err.filename), 80)}" if err.filename is not None else ""
        return f"{err.strerror}{name}"
    if isinstance(err, MemoryError):
        return "out of memory (MemoryError)"
    if isinstance(err, RecursionError):
        return "a structure nested too deeply to process (RecursionError)"
    return one_line(err, limit=300, where=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` (a KeyboardInterrupt) while the block runs, in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_on_late_signals() -> None:
    """After the work, a SIGINT or SIGTERM (while the interpreter shuts down) exits with its code, quietly."""

    def leave(signum, frame) -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, leave)
        signal.signal(signal.SIGTERM, leave)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--version"]:  # before the parser, whose subcommands import torch (seconds)
        print(f"rewriter {__version__}")
        return 0
    from .._files import claims, protected_inputs
    from ..analysis.sizes import unbounded
    from ._common import inputs_of

    # the log is set up before parsing, so that a usage error is a JSON line too with --log-json
    logging = logging_to_stderr(quiet="--quiet" in argv, as_json="--log-json" in argv, command=_command(argv))
    with unbounded() if "--allow-large" in argv else contextlib.nullcontext(), logging:
        args, unknown = build_parser().parse_known_args(argv)  # sizes are checked while parsing
        if unknown:  # refused by the subcommand's parser: its --help is the page to read
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        try:
            with _warnings_as_lines(args.command_parser), protected_inputs(inputs_of(args)), claims():
                return args.run(args)
        except RewriterError as err:
            if args.debug:
                raise
            log(_shortened(_in_flags(one_line(err), err, args.command_parser)), "error")
            return err.exit_code


def _shortened(text: str, limit: int = 2000) -> str:
    """A message whose quoted argument runs to megabytes, cut in its middle (the reason is at its end)."""
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


def _command(argv: list[str]) -> str:
    return next((a for a in argv if a in SUBCOMMANDS), "")


def _in_flags(text: str, err: BaseException, parser: argparse.ArgumentParser) -> str:
    """A library message in the command's words: the Python parameters it names (``err.param``) as flags."""
    from ._flags import in_flags

    return in_flags(text, params_of(err), parser)


@contextlib.contextmanager
def _warnings_as_lines(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Our warnings as ``warning: ...`` lines on stderr (not raised, whatever the filters say), naming the
    command's flags where they speak of a parameter."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", RewriterWarning)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, RewriterWarning):
                log(_in_flags(str(message), message, parser), "warning")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


if __name__ == "__main__":
    sys.exit(main())
