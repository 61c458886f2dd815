"""The automated optimizer: from a baseline and a resolution to the best rewritten model, training-free.

Compositions of the registered strategies (the search space their parameter declarations give) are
evaluated one at a time on the meta device; the Pareto front over cost, unproductive layers and the final
layer's fit to the input is computed, and the papers' heuristic chooses within the budget (paper 000 V,
dissertation 9.4.2 and 11). ``sweep`` gives the border and the cost per resolution (strategy D3).
Imports the layers below it (analysis, models, engine, lab), never render or the CLI.

The face exports ``optimize`` as ``rewriter.optimize_model``: ``rewriter.optimize`` is this package, and a
name cannot be both a module and a function (importing the package rebinds the name to it).

Example:
    >>> import rewriter
    >>> result = rewriter.optimize_model("cifar_vgg16", input_size=32, objective="params", dry_run=True)
    >>> result.chosen.label  # cost first: the fewest parameters with no unproductive layer
    'truncate(rule=output, keep_blocks=0)'
    >>> result.choices["fit"].chosen.label  # fit first: the last layer sees the whole 32 px
    'truncate(rule=input, keep_blocks=0)'
"""

from __future__ import annotations

from .choice import (
    OBJECTIVES,
    PREFERENCES,
    Budget,
    Choice,
    Objective,
    Prefer,
    Ratio,
    choose,
    dominates,
    explain,
    pareto_front,
    parse_limit,
    rank_key,
)
from .copies import meta_copy
from .errors import OptimizeError
from .figures import Figures, figures_of, measure_candidate
from .resolution import Sweep, SweepRow, parse_sizes, sweep
from .runner import OptimizeResult, optimize
from .search import Candidate, step_text
from .space import StrategyChoices, composition_count, search_space
from .validation import Validation, validate

__all__ = [
    "OBJECTIVES",
    "PREFERENCES",
    "Budget",
    "Candidate",
    "Choice",
    "Figures",
    "Objective",
    "OptimizeError",
    "OptimizeResult",
    "Prefer",
    "Ratio",
    "StrategyChoices",
    "Sweep",
    "SweepRow",
    "Validation",
    "choose",
    "composition_count",
    "dominates",
    "explain",
    "figures_of",
    "measure_candidate",
    "meta_copy",
    "optimize",
    "pareto_front",
    "parse_limit",
    "parse_sizes",
    "rank_key",
    "search_space",
    "step_text",
    "sweep",
    "validate",
]
