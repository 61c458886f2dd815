"""The optimizer's own error: a bad option or a search it cannot run."""

from __future__ import annotations

from .._errors import EXIT_USAGE, RecipeError, RewriterError


class OptimizeError(RewriterError, ValueError):
    """An option of the optimizer is out of range, or the search space is empty or too large."""


class SearchValueError(RecipeError):
    """A value the caller gave the search (``--search``, ``--include``, ``--exclude``) is unknown or out of
    range: a usage error on the command line (exit code 2), not an invalid recipe file."""

    exit_code = EXIT_USAGE
