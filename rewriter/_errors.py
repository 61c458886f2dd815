"""The exception hierarchy: every error the library raises on purpose is a ``RewriterError``.

Each child also subclasses the builtin a caller would naturally catch (``ValueError``,
``LookupError``, ...), so code that does not know about ``rewriter`` still handles them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import ClassVar

#: the exit codes of the command line, one per kind of outcome (README, "Exit codes")
EXIT_OK = 0
EXIT_FAILURE = 1  # the work could not be done (a rewrite that does not apply, a file that cannot be written)
EXIT_USAGE = 2  # the command line is wrong: an unknown option, a value out of its range
EXIT_VERDICT = 3  # done, with a negative verdict: nothing meets the budget, some study cells failed
EXIT_INVALID_INPUT = 4  # an input file is not valid: a recipe, a model file, a weights file
EXIT_INTERNAL = 5  # an unexpected error (a bug or the environment): one line, --debug shows the traceback
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM


class _NamesParameters:
    """What errors and warnings share: ``param``, the Python parameter (or a tuple of them) the message
    speaks of, kept beside the message (and through pickling, as part of the instance's dict)."""

    def __init__(self, *args: object, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.param = param

    @property
    def params(self) -> tuple[str, ...]:
        """The parameters the message names, as a tuple (empty when it names none)."""
        return params_of(self)


class RewriterError(_NamesParameters, Exception):
    """Base class of all errors raised on purpose by ``rewriter``; its message is always one line (a value
    quoted in it, such as a key read from a file, cannot break it). ``exit_code`` is the CLI's code for it.

    ``param`` names the Python parameter (or a tuple of them) the message speaks of. The message spells it
    as a Python caller writes it, never as a command-line flag: ``num_classes``, ``trust_pickle=True``,
    ``fmt='onnx'``, ``unbounded()``, a one-word name in backquotes (```lr```) or leading the message (``lr:
    ...``); the CLI writes its command's flag in those places (``cli/_flags.py``)."""

    exit_code: ClassVar[int] = EXIT_FAILURE

    def __str__(self) -> str:
        return re.sub(r"\s*[\r\n]+\s*", " ", super().__str__())


class ModelNotFoundError(RewriterError, LookupError):
    """A model name or import spec does not resolve to a model."""


class WeightsError(RewriterError, ValueError):
    """A weights or model file cannot be loaded into the model."""

    exit_code = EXIT_INVALID_INPUT


class UntrustedPickleError(RewriterError, PermissionError):
    """A file holds a pickled object and the caller did not pass the trust flag."""


class TraceError(RewriterError, RuntimeError):
    """torch.fx cannot trace the model."""


class InputSizeError(RewriterError, ValueError):
    """The model does not run at the requested input size (a feature map collapses, a shape is fixed), or a
    size, an image channel count or a class count is outside its bounds (``analysis/sizes.py``)."""


class AnalysisError(RewriterError, ValueError):
    """The analysis was asked for something that does not exist (an unknown layer name, a bad option)."""


class RecipeError(RewriterError, ValueError):
    """A recipe is malformed: an unknown strategy, an unknown or mistyped parameter, a missing field."""

    exit_code = EXIT_INVALID_INPUT


class RewriteError(RewriterError, RuntimeError):
    """A strategy does not apply to the model, or its result breaks an invariant; nothing is written."""


class ModelFileError(RewriterError, OSError):
    """A file cannot be written (it exists and overwriting was not asked for, it is an input) or read back."""


class InvalidFileError(ModelFileError):
    """An input file is not what it must be: an empty, corrupt or special file, or a model file that breaks
    its schema or bounds (the CLI exits with code 4)."""

    exit_code = EXIT_INVALID_INPUT


class UsageError(RewriterError, ValueError):
    """The command line is inconsistent (a missing or conflicting option); the CLI exits with code 2."""

    exit_code = EXIT_USAGE


class RewriterWarning(_NamesParameters, UserWarning):
    """Something the caller should know, that does not stop the work (the CLI prints ``warning: ...``).
    ``param`` as for ``RewriterError``: ``warnings.warn(RewriterWarning(message, param="lr"))``."""


def params_of(err: BaseException) -> tuple[str, ...]:
    """The Python parameters an error or warning names (its ``param``), as a tuple; () for any other."""
    param = getattr(err, "param", None)
    if param is None:
        return ()
    return (param,) if isinstance(param, str) else tuple(param)


def close_matches(word: str, candidates: Iterable[str], *, n: int = 3) -> str:
    """Return a ``"; did you mean 'a', 'b'?"`` suffix for an error message, or ``""`` if nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=n, cutoff=0.6)
    if not matches:
        return ""
    return "; did you mean " + ", ".join(f"'{m}'" for m in matches) + "?"
