"""The optimizer's own error: a bad option or a search it cannot run."""

from __future__ import annotations

from .._errors import RewriterError


class OptimizeError(RewriterError, ValueError):
    """An option of the optimizer is out of range, or the search space is empty or too large."""
