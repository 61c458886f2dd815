"""The error of the study machinery."""

from __future__ import annotations

from ..._errors import RewriterError


class StudyError(RewriterError, ValueError):
    """A study cannot start or read its folder: a bad grid or setup, an output folder holding something
    else, a broken ``study.json`` or cell file (named, with its fault)."""
