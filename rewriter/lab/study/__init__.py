"""Trade-off studies: accuracy against FLOPs, parameters and latency for models x recipes x seeds.

The protocol of paper 000 V and dissertation 11.4: the baseline and every rewritten architecture are trained
with one shared setup and several seeds, and accuracy is reported beside parameters and FLOPs per image (and
here CPU latency, since FLOPs are not time). Each cell (model, recipe, seed) is written to
``OUT/cells/<id>.json`` as soon as it finishes, so an interrupted study resumes where it stopped and a failed
cell is recorded with its error while the others go on. Every cell records its training curve and a
convergence mark; no verdict is given against a baseline that did not converge. ``results.csv``,
``results.json``, ``summary.md``, ``pareto.png`` and ``curves.png`` are rebuilt from the cells after every
run.

The modules: ``grid`` (the grid, its setup and its folder), ``folder`` (what a folder may hold),
``record`` (a cell's row), ``cells`` (running one cell), ``executors`` (serial, processes, Ray),
``runner`` (``run_study``), ``extension`` (continuing cells to more epochs, ``--extend``), ``summary``
(groups and Pareto fronts) and ``markdown`` (the files written).
"""

from __future__ import annotations

from .cells import CellJob, build_variant, fill_latency, head_name, latencies, run_cell
from .errors import StudyError
from .executors import Executor
from .grid import Cell, Study, StudySetup, Variant, parse_variant, source_key
from .markdown import PlotCurves, PlotPareto, summary_markdown, write_results
from .record import COLUMNS, CellRow, EpochPoint, Extension
from .runner import find_study_lr, run_study
from .summary import Group, summarize

__all__ = [
    "COLUMNS",
    "Cell",
    "CellJob",
    "CellRow",
    "EpochPoint",
    "Executor",
    "Extension",
    "Group",
    "PlotCurves",
    "PlotPareto",
    "Study",
    "StudyError",
    "StudySetup",
    "Variant",
    "build_variant",
    "fill_latency",
    "find_study_lr",
    "head_name",
    "latencies",
    "parse_variant",
    "run_cell",
    "run_study",
    "source_key",
    "summarize",
    "summary_markdown",
    "write_results",
]
