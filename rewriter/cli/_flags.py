"""Library messages in the command line's words: where an error or warning names a Python parameter (its
``param``), the CLI writes the flag its command's parser spells for it.

The library speaks of ``num_classes``, ``trust_pickle=True``, ``fmt='onnx'`` or ``unbounded()``; a user of
``rewriter train`` reads ``--num-classes``, ``--trust-pickle``, ``--format onnx`` and ``--allow-large``. The
flag is read from the parser's actions (a parameter is found by its ``dest``), so a renamed flag is renamed
in the messages too; ``DESTS`` declares the few parameters whose flag has another ``dest``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterable

#: Python parameters whose flag stores under another name (the parameter -> the flag's ``dest``)
DESTS = {
    "fmt": "format",
    "overwrite": "force",
    "model_args": "model_arg",
    "leaf_modules": "leaf_module",
    "unbounded": "allow_large",
    "width_factors": "width_factor",
}

#: a value after ``name=``: a quoted string (its quotes dropped) or a bare word (a number, True, cpu; a
#: sentence's full stop or colon after it is not part of it)
_VALUE = r"""(?:'(?P<single>[^']*)'|"(?P<double>[^"]*)"|(?P<bare>[^\s,;)'"]*[^\s,;)'".:]))"""


def in_flags(message: str, params: Iterable[str], parser: argparse.ArgumentParser | None) -> str:
    """``message`` with each parameter of ``params`` that ``parser`` has a flag for written as that flag, in
    these spellings: ``name=True`` -> ``--flag`` (a flag that takes no value), ``name=VALUE`` -> ``--flag
    VALUE`` (quotes dropped), ``package.name()`` and the name in backquotes -> ``--flag``, and the bare
    ``name`` where it cannot be an English word (it has an underscore: ``num_classes``) or leads the message
    (``lr: ...``); "device" inside a sentence stays a word. A parameter without a flag in this command stays
    as it is (the parser's actions are read through argparse's ``_actions``, its only list of them).

    Example:
        >>> p = argparse.ArgumentParser()
        >>> _ = p.add_argument("--num-classes"), p.add_argument("--trust-pickle", action="store_true")
        >>> in_flags("num_classes must be positive; pass trust_pickle=True", ["num_classes", "trust_pickle"], p)
        '--num-classes must be positive; pass --trust-pickle'
    """
    if parser is None:
        return message
    flags = {action.dest: action for action in parser._actions if action.option_strings}
    for param in params:
        action = flags.get(DESTS.get(param, param))
        if action is not None:
            message = _spelled(message, param, action)
    return message


def _spelled(message: str, param: str, action: argparse.Action) -> str:
    """``message`` with the spellings of ``param`` replaced by ``action``'s long option (``--latency``, not
    ``--no-latency``); a name inside a path or a quoted value (``/runs/lr=0.1/``, ``'num_classes'``) stays."""
    longs = [o for o in action.option_strings if o.startswith("--")] or list(action.option_strings)
    flag = next((o for o in longs if not o.startswith("--no-")), longs[0])
    negated = next((o for o in longs if o.startswith("--no-")), None)
    name = re.escape(param)
    before = r"(?<![\w.\-/\\'\"])"  # not inside a word, a dotted name, a path or right after a quote

    def assigned(match: re.Match) -> str:
        value = next(v for v in match.group("single", "double", "bare") if v is not None)
        if action.nargs == 0 and value in ("True", "False"):
            on = value == "True"
            return flag if on else negated or match.group(0)  # store_true has no spelling for False
        return f"{flag} {shlex.quote(value)}"

    message = re.sub(rf"{before}{name}={_VALUE}", assigned, message)
    message = re.sub(rf"{before}(?:[A-Za-z_]\w*\.)*{name}\(\)|`{name}`", flag, message)
    if "_" in param:
        return re.sub(rf"{before}{name}(?![\w=(/\\'\"]|\.\w)", flag, message)
    return re.sub(rf"^{name}(?=[:\s])", flag, message)


def in_common_flags(err: BaseException) -> str:
    """``str(err)`` with the parameters it names written as the options every command takes
    (``--allow-large``): the message of an argparse type, which runs before its command is known."""
    from .._errors import params_of
    from . import common_parser

    return in_flags(str(err), params_of(err), common_parser())
