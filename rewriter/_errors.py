"""The exception hierarchy: every error the library raises on purpose is a ``RewriterError``.

Each child also subclasses the builtin a caller would naturally catch (``ValueError``,
``LookupError``, ...), so code that does not know about ``rewriter`` still handles them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class RewriterError(Exception):
    """Base class of all errors raised on purpose by ``rewriter``; its message is always one line (a value
    quoted in it, such as a key read from a file, cannot break it)."""

    def __str__(self) -> str:
        return re.sub(r"\s*[\r\n]+\s*", " ", super().__str__())


class ModelNotFoundError(RewriterError, LookupError):
    """A model name or import spec does not resolve to a model."""


class WeightsError(RewriterError, ValueError):
    """A weights or model file cannot be loaded into the model."""


class UntrustedPickleError(RewriterError, PermissionError):
    """A file holds a pickled object and the caller did not pass the trust flag."""


class TraceError(RewriterError, RuntimeError):
    """torch.fx cannot trace the model."""


class InputSizeError(RewriterError, ValueError):
    """The model does not run at the requested input size (a feature map collapses, a shape is fixed)."""


class AnalysisError(RewriterError, ValueError):
    """The analysis was asked for something that does not exist (an unknown layer name, a bad option)."""


class RecipeError(RewriterError, ValueError):
    """A recipe is malformed: an unknown strategy, an unknown or mistyped parameter, a missing field."""


class RewriteError(RewriterError, RuntimeError):
    """A strategy does not apply to the model, or its result breaks an invariant; nothing is written."""


class ModelFileError(RewriterError, OSError):
    """A file cannot be written (it exists and --force was not given, it is an input) or read back."""


class UsageError(RewriterError, ValueError):
    """The command line is inconsistent (a missing or conflicting option); the CLI exits with code 2."""


class RewriterWarning(UserWarning):
    """Something the caller should know, that does not stop the work (the CLI prints ``warning: ...``)."""


def close_matches(word: str, candidates: Iterable[str], *, n: int = 3) -> str:
    """Return a ``"; did you mean 'a', 'b'?"`` suffix for an error message, or ``""`` if nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + ", ".join(f"'{m}'" for m in matches) + "?"
