"""Text primitives every layer uses: one-line error messages, numbers with SI prefixes, per-axis sizes,
and plain-text tables."""

from __future__ import annotations

import math
import traceback
from collections.abc import Sequence
from pathlib import Path


def one_line(err: BaseException, *, limit: int | None = None, where: bool = False) -> str:
    """The message of ``err`` on one line, without the notes torch.fx appends ("While executing ...").

    Args:
        limit: keep at most this many characters of the message.
        where: for an error that is not one of ours (not a ``RewriterError``), prefix its type and append
            the file and line it came from, so a failure recorded for later still points at its cause.
    """
    from ._errors import RewriterError

    text = " ".join(str(err).split("\n\nWhile executing")[0].split()) or type(err).__name__
    if limit is not None:
        text = text[:limit]
    if not where or isinstance(err, RewriterError):
        return text
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    place = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(err).__name__}: {text}{place}"


def root_cause(err: BaseException, *, limit: int | None = 200) -> str:
    """The innermost error behind ``err`` (its chain of causes and contexts), on one line, with its type: what
    went wrong where a library wraps the reason in advice (torch.load's ``weights_only`` message)."""
    seen = {id(err)}
    while (inner := err.__cause__ or err.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    return f"{type(err).__name__}: {one_line(err, limit=limit)}"


def human(value: float | None, unit: str = "") -> str:
    """``37118464`` -> ``37.12 M``: three significant decimals with an SI prefix."""
    if value is None:
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}".rstrip()
    return f"{value:g} {unit}".rstrip()


def axes_text(value: Sequence | None) -> str:
    """``(7, 7)`` -> ``7``; ``(1, 3)`` -> ``1x3``; unbounded -> ``inf``."""
    if value is None:
        return "-"
    parts = ["inf" if isinstance(v, float) and math.isinf(v) else f"{v:g}" for v in value]
    return parts[0] if len(set(parts)) == 1 else "x".join(parts)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None) -> str:
    """Columns padded to their widest cell; ``align`` has one ``<`` or ``>`` per column (default: left)."""
    align = align or "<" * len(headers)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(f"{h:{a}{w}}" for h, a, w in zip(headers, align, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths, strict=True)).rstrip())
    return "\n".join(lines)
