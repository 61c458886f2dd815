"""Run the ``rewriter`` command line in-process, the way the CLI tests read its results."""

from __future__ import annotations

from rewriter.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """The exit code (usage errors exit through ``SystemExit``), stdout and stderr of ``rewriter ARGV``."""
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err
