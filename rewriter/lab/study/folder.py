"""What a study folder may hold before a study writes into it, and reading its ``study.json`` safely.

A study writes ``results.csv``, ``results.json``, ``summary.md`` and ``pareto.png`` into its folder and
replaces them on every run. A folder is taken only if it is a study (its ``study.json`` records the same
setup and recipes), or empty, or the caller passed ``force``: a folder of other files is never overwritten
by accident. A ``study.json`` that is not valid is named with its fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import StudyError

SETUP_FILE = "study.json"


def check_folder(out: Path, *, force: bool) -> None:
    """Refuse ``out`` if it is a file, or a folder without ``study.json`` that is not empty (unless
    ``force``)."""
    if out.exists() and not out.is_dir():
        raise StudyError(f"`out` {out} is a file; give a folder for the study", param="out")
    if not out.is_dir() or (out / SETUP_FILE).exists() or force:
        return
    found = sorted(p.name for p in out.iterdir())
    if found:
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise StudyError(
            f"`out` {out} is a folder that holds no study ({SETUP_FILE} is missing) but other files ({shown}); "
            "the study would replace its results files there. Give an empty or new folder, or pass force=True",
            param=("out", "force"),
        )


def read_record(out: Path, *, force: bool) -> dict[str, Any] | None:
    """The checked contents of ``out/study.json`` (None if there is none, or with ``force`` if it is
    broken: the run then records its own setup in its place)."""
    path = out / SETUP_FILE
    if not path.is_file():
        return None
    try:
        record = load_json(path)
        _check_shape(record, path)
    except StudyError as err:
        if force:
            return None
        raise StudyError(
            f"{err}; fix it, or pass force=True to record this run's setup in its place", param="force"
        ) from err
    return record


def _check_shape(record: Any, path: Path) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("setup"), dict):
        raise StudyError(f"{path}: not a study record (no 'setup' object)")
    grid = record.get("grid")
    if not isinstance(grid, dict):
        raise StudyError(f"{path}: not a study record (no 'grid' object)")
    kinds = {"models": list, "recipes": dict, "seeds": list}
    for key, kind in kinds.items():
        if not isinstance(grid.get(key), kind):
            raise StudyError(f"{path}: 'grid.{key}' must be a JSON {'object' if kind is dict else 'list'}")


def load_json(path: Path) -> Any:
    """The JSON in ``path``; raises ``StudyError`` naming the file and the fault."""
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise StudyError(f"{path}: cannot be read ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise StudyError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
    except (RecursionError, ValueError) as err:  # nested too deeply, a 5000-digit number, not UTF-8
        raise StudyError(f"{path}: not a JSON this study wrote ({type(err).__name__})") from err


def check_same_study(
    out: Path, now: dict[str, Any], recipes: dict[str, Any], recorded: dict[str, Any]
) -> None:
    """Refuse a folder whose recorded setup (``now``: this run's), or a recipe under one of this grid's
    labels (``recipes``: label -> recipe dict), differs."""
    if recorded["setup"] != now:
        changed = sorted(k for k in {*now, *recorded["setup"]} if recorded["setup"].get(k) != now.get(k))
        longer = changed == ["epochs"] and isinstance(recorded["setup"].get("epochs"), int)
        longer = longer and now["epochs"] > recorded["setup"]["epochs"]
        raise StudyError(
            f"the folder {out} holds a study with another setup (differs in {', '.join(changed)}); "
            + ("add extend=True to train its cells on from their checkpoints, or " if longer else "")
            + "use another `out` or the recorded setup",
            param=("extend", "out"),
        )
    earlier = recorded["grid"]["recipes"]
    changed = [label for label, recipe in recipes.items()
               if label in earlier and earlier[label] != json.loads(json.dumps(recipe))]  # fmt: skip
    if changed:
        raise StudyError(
            f"the folder {out} holds results of another recipe labelled {', '.join(map(repr, changed))}; "
            "rename the recipe file or use another `out`",
            param="out",
        )
