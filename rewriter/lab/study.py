"""Trade-off studies: accuracy against FLOPs, parameters and latency for models x recipes x seeds.

The protocol of paper 000 V and dissertation 11.4: the baseline and every rewritten architecture are trained
with one shared setup and several seeds, and accuracy is reported beside parameters and FLOPs per image (and
here CPU latency, since FLOPs are not time). Each cell (model, recipe, seed) is written to
``OUT/cells/<id>.json`` as soon as it finishes, so an interrupted study resumes where it stopped and a failed
cell is recorded with its error while the others go on. ``results.csv``, ``results.json``, ``summary.md`` and
``pareto.png`` are rebuilt from the cells after every run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import RecipeError, RewriterError
from .._files import atomic_path, write_json
from .._text import one_line
from ..engine.recipe import Recipe
from ..engine.registry import list_strategies

SETUP_FILE = "study.json"
COLUMNS = (
    "model", "recipe", "seed", "status", "test_accuracy", "params", "flops", "flops_static", "latency_ms_b1",
    "latency_ms_b32", "train_s", "epochs", "border_layer_min", "is_baseline", "same_as_baseline", "error",
)  # fmt: skip

_RESULTS = (  # what a cell whose recipe changes nothing takes from its baseline
    "test_accuracy",
    "params",
    "flops",
    "flops_static",
    "latency_ms_b1",
    "latency_ms_b32",
    "train_s",
    "border_layer_min",
)


class StudyError(RewriterError, ValueError):
    """A study cannot start: a bad grid, or an output folder holding another study's results."""


@dataclass(frozen=True)
class Variant:
    """One column of the grid: a recipe under a short label (``baseline``, ``truncate``, ``stem``)."""

    label: str
    recipe: Recipe


def parse_variant(text: str) -> Variant:
    """``baseline`` (the unchanged model), a strategy name (one step, default parameters), or a YAML file
    (labelled by its stem; ``steps: []`` is a baseline too)."""
    if text == "baseline":
        return Variant("baseline", Recipe.empty())
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        recipe = Recipe.from_yaml(path, allow_empty=True)
        recipe.strategies()
        return Variant(path.stem, recipe)
    if text in list_strategies():
        return Variant(text, Recipe.from_strategies([text]))
    raise RecipeError(
        f"--recipe '{text}' is neither 'baseline', a strategy ({', '.join(list_strategies())}) nor a YAML file"
    )


@dataclass(frozen=True)
class StudySetup:
    """What every cell shares; recorded in ``study.json`` so that a resumed study cannot mix setups."""

    data: str
    input_size: tuple[int, int]
    epochs: int
    lr: float = 0.1
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_batches: int | None = None
    finetune_head: bool = False
    latency_repeats: int = 15

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "input_size": list(self.input_size)}


@dataclass(frozen=True)
class Cell:
    model: str
    variant: Variant
    seed: int

    @property
    def id(self) -> str:
        raw = f"{self.model}__{self.variant.label}__seed{self.seed}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)


@dataclass
class Study:
    """A grid of models x variants x seeds and where its results live."""

    models: Sequence[str]
    variants: Sequence[Variant]
    seeds: Sequence[int]
    setup: StudySetup
    out: Path
    retry_failed: bool = False
    cells: list[Cell] = field(init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise StudyError(f"two recipes share a label: {labels}; rename one of the files")
        if not self.models or not self.variants or not self.seeds:
            raise StudyError("a study needs at least one --model, one --recipe and one seed")
        self.cells = [Cell(m, v, s) for m in self.models for v in self.variants for s in self.seeds]
        ids = [cell.id for cell in self.cells]
        if len(set(ids)) != len(ids):
            clash = sorted({i for i in ids if ids.count(i) > 1})
            raise StudyError(
                f"two cells would share a file name ({', '.join(clash)}); rename a model or recipe"
            )

    def cell_path(self, cell: Cell) -> Path:
        return self.out / "cells" / f"{cell.id}.json"

    def pending(self) -> list[Cell]:
        """Cells without a result yet (or with a failed one, if ``retry_failed``), baselines first (a recipe
        that changes nothing reuses their results)."""
        cells = [cell for cell in self.cells if not self._finished(cell)]
        return sorted(cells, key=lambda cell: bool(cell.variant.recipe.steps))

    def _finished(self, cell: Cell) -> bool:
        path = self.cell_path(cell)
        if not path.is_file():
            return False
        return not self.retry_failed or json.loads(path.read_text())["status"] == "ok"

    def baseline_row(self, cell: Cell) -> dict[str, Any] | None:
        """The finished baseline cell of the same model and seed, if the grid has one."""
        for variant in self.variants:
            if not variant.recipe.steps:
                path = self.cell_path(Cell(cell.model, variant, cell.seed))
                if path.is_file():
                    return json.loads(path.read_text())
        return None

    def recorded(self) -> dict[str, Any] | None:
        """The study.json of the folder, after checking that it was written with the same setup."""
        path = self.out / SETUP_FILE
        recorded = json.loads(path.read_text()) if path.is_file() else None
        if recorded is not None and recorded["setup"] != self.setup.to_json():
            changed = sorted(k for k, v in self.setup.to_json().items() if recorded["setup"].get(k) != v)
            raise StudyError(
                f"{self.out} holds a study with another setup (differs in {', '.join(changed)}); "
                "use another --out or the recorded setup"
            )
        if recorded is not None:
            earlier = recorded["grid"]["recipes"]
            changed = [
                v.label for v in self.variants
                if v.label in earlier and earlier[v.label] != json.loads(json.dumps(v.recipe.to_dict()))
            ]  # fmt: skip
            if changed:
                raise StudyError(
                    f"{self.out} holds results of another recipe labelled {', '.join(map(repr, changed))}; "
                    "rename the recipe file or use another --out"
                )
        return recorded

    def prepare(self) -> None:
        """Create the folder and record the setup and the grid (a resumed study may extend the grid)."""
        recorded = self.recorded()
        (self.out / "cells").mkdir(parents=True, exist_ok=True)
        grid = {"models": list(self.models), "recipes": {v.label: v.recipe.to_dict() for v in self.variants},
                "seeds": list(self.seeds)}  # fmt: skip
        if recorded is not None:
            grid["models"] = list(dict.fromkeys([*recorded["grid"]["models"], *grid["models"]]))
            grid["recipes"] = {**recorded["grid"]["recipes"], **grid["recipes"]}
            grid["seeds"] = sorted({*recorded["grid"]["seeds"], *grid["seeds"]})
        write_json(self.out / SETUP_FILE, {"setup": self.setup.to_json(), "grid": grid})

    def rows(self) -> list[dict[str, Any]]:
        """Every finished cell in the folder (this grid's and earlier runs'), in a stable order."""
        rows = [json.loads(p.read_text()) for p in sorted((self.out / "cells").glob("*.json"))]
        models = {m: i for i, m in enumerate(self.models)}
        recipes = {v.label: i for i, v in enumerate(self.variants)}

        def key(row: dict[str, Any]) -> tuple:
            return (models.get(row["model"], len(models)), row["model"],
                    recipes.get(row["recipe"], len(recipes)), row["recipe"], row["seed"])  # fmt: skip

        return sorted(rows, key=key)


_DATA_CACHE: dict[tuple[str, tuple[int, int]], Any] = {}


def _data(spec: str, size: tuple[int, int]) -> Any:
    from .data import load_data

    key = (spec, size)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_data(spec, size)
    return _DATA_CACHE[key]


def head_name(model: nn.Module) -> str:
    """The last Linear (or conv) in registration order: the classifier that ``--finetune-head`` trains."""
    layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise StudyError("--finetune-head: the model has no Linear or conv layer to train")
    return layers[-1]


def build_variant(cell: Cell, setup: StudySetup) -> tuple[nn.Module, Any, bool]:
    """The cell's model: built (initial weights from the seed) and rewritten by its recipe; the data; and
    whether the recipe changed the model."""
    from ..engine.pipeline import rewrite
    from ..models.sources import load_model_for_classes

    data = _data(setup.data, setup.input_size)
    torch.manual_seed(cell.seed)
    from_file = Path(cell.model).is_file()
    model, _ = load_model_for_classes(cell.model, data.num_classes, input_size=setup.input_size)
    changed = False
    if cell.variant.recipe.steps:
        result = rewrite(
            model, cell.variant.recipe, input_size=setup.input_size, data=data, pretrained=from_file,
            measure_cost=False,
        )  # fmt: skip
        model, changed = result.model, not all(plan.is_noop for plan in result.plans)
    return model, data, changed


def latencies(model: nn.Module, setup: StudySetup) -> dict[str, float]:
    from ..engine.report import measure_latency

    return {
        f"latency_ms_b{batch}": round(
            measure_latency(model, setup.input_size, batch=batch, repeats=setup.latency_repeats), 4
        )
        for batch in (1, 32)
    }


def run_cell(
    cell: Cell,
    setup: StudySetup,
    *,
    latency: bool = True,
    baseline: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Build, rewrite, measure and train one cell; return its row (``status`` ok or failed, never raises
    for a failure of the cell itself). Without ``latency`` the latency columns stay empty (``fill_latency``).
    A recipe that changes nothing builds the baseline's model with the same seed: given the ``baseline`` row
    of that seed, the cell takes its results instead of training the same model again."""
    from torch.utils.data import DataLoader

    from ..analysis.traced import analyze
    from .routing import RoutedModel, routing_stats
    from .training import TrainConfig, train

    row = _blank_row(cell, setup, None)
    try:
        model, data, changed = build_variant(cell, setup)
        row["is_baseline"] = not cell.variant.recipe.steps
        row["same_as_baseline"] = not changed
        if not changed and baseline is not None and baseline["status"] == "ok":
            return {**row, **{k: baseline[k] for k in _RESULTS}, "status": "ok"}
        analysis = analyze(model, setup.input_size, name=cell.model)
        row.update(params=analysis.params, flops=analysis.flops, flops_static=analysis.flops,
                   border_layer_min=analysis.border_layer_min)  # fmt: skip
        if latency:
            row.update(latencies(model, setup))
        config = TrainConfig(
            epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr, momentum=setup.momentum,
            weight_decay=setup.weight_decay, seed=cell.seed, max_batches=setup.max_batches,
            train_only=head_name(model) if setup.finetune_head else None, evaluate_every_epoch=False,
        )  # fmt: skip
        start = time.perf_counter()
        result = train(model, data, config, progress=progress)
        row.update(
            train_s=round(time.perf_counter() - start, 2), test_accuracy=result.test_accuracy, status="ok"
        )
        if isinstance(model, RoutedModel):  # input-adaptive depth: FLOPs of the units each test image ran
            stats = routing_stats(model, DataLoader(data.test, batch_size=256), setup.input_size,
                                  in_channels=data.in_channels)  # fmt: skip
            row["flops"] = round(stats.mean_flops)
    except Exception as err:  # a failed cell is a result: recorded with its reason, the study goes on
        row.update(status="failed", error=one_line(err, limit=300, where=True))
    return row


def _blank_row(cell: Cell, setup: StudySetup, err: BaseException | None) -> dict[str, Any]:
    """A cell's row with nothing measured yet; with ``err``, the row of a cell that failed with it."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=cell.model, recipe=cell.variant.label, seed=cell.seed, epochs=setup.epochs)
    if err is not None:
        row.update(status="failed", error=one_line(err, limit=300, where=True))
    return row


def fill_latency(study: Study, progress: Callable[[str], None] | None = None, *, again: bool = False) -> None:
    """Measure the latency of finished cells that lack it (every finished cell with ``again``), one at a
    time with nothing else running: cells trained in parallel processes are timed here, since timing beside
    training measures contention, and ``again`` times a study whose cells ran on a busy machine."""
    # baselines first: a recipe that changes nothing takes their figures
    for cell in sorted(study.cells, key=lambda cell: bool(cell.variant.recipe.steps)):
        path = study.cell_path(cell)
        row = json.loads(path.read_text()) if path.is_file() else None
        if row is None or row["status"] != "ok" or (row["latency_ms_b1"] is not None and not again):
            continue
        baseline = study.baseline_row(cell) if cell.variant.recipe.steps and row["same_as_baseline"] else None
        if baseline is not None and baseline["latency_ms_b1"] is not None:
            timed = {key: baseline[key] for key in ("latency_ms_b1", "latency_ms_b32")}
        else:
            if progress:
                progress(f"timing {cell.id}")
            timed = latencies(build_variant(cell, study.setup)[0], study.setup)
        write_json(path, {**row, **timed})


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _pool_cell(cell: Cell, setup: StudySetup, baseline: dict[str, Any] | None) -> dict[str, Any]:
    return run_cell(cell, setup, latency=False, baseline=baseline)


def _run_parallel(
    study: Study, cells: list[Cell], workers: int, finish: Callable[[Cell, dict[str, Any]], None]
) -> None:
    """Run ``cells`` in a pool of ``workers`` processes (one pool per call: a pool that breaks because a
    worker died fails the cells it held, not the next wave)."""
    import concurrent.futures
    import multiprocessing

    if not cells:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(_pool_cell, cell, study.setup, study.baseline_row(cell)): cell for cell in cells
        }
        for future in concurrent.futures.as_completed(futures):
            cell = futures[future]
            try:
                row = future.result()
            except concurrent.futures.process.BrokenProcessPool as err:
                reason = StudyError(
                    f"a worker process died (out of memory or killed) while this cell or another ran beside it "
                    f"({type(err).__name__}); run again with --retry-failed"
                )
                row = _blank_row(cell, study.setup, reason)
            finish(cell, row)


def run_study(
    study: Study,
    *,
    workers: int = 1,
    on_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
    progress: bool = True,
    plot: PlotPareto | None = None,
) -> list[dict[str, Any]]:
    """Run the pending cells (in ``workers`` processes, or with DDP inside each cell under torchrun), write
    each as it finishes, then the tables and, given ``plot`` (``rewriter.render.plot_pareto``), the Pareto
    plot. Returns all rows."""
    from tqdm import tqdm

    from .training import distributed

    rank, world = distributed()
    if rank == 0:
        study.prepare()
    if world > 1:
        torch.distributed.barrier()
    pending = study.pending()
    bar = tqdm(total=len(study.cells), initial=len(study.cells) - len(pending), desc="study", unit="cell",
               disable=not progress or rank != 0)  # fmt: skip

    def finish(cell: Cell, row: dict[str, Any]) -> None:
        if rank == 0:
            write_json(study.cell_path(cell), row)
            if on_cell is not None:
                on_cell(cell, row)
        bar.update()

    if workers > 1 and world == 1:
        # baselines first, so that a recipe that changes nothing can take their results
        for wave in (
            [c for c in pending if not c.variant.recipe.steps],
            [c for c in pending if c.variant.recipe.steps],
        ):
            _run_parallel(study, wave, workers, finish)
    else:
        for cell in pending:
            row = run_cell(cell, study.setup, baseline=study.baseline_row(cell))
            finish(cell, row)
            if world > 1:
                torch.distributed.barrier()
    bar.close()
    if rank == 0:
        fill_latency(study)
        rows = study.rows()
        write_results(study, rows, plot=plot)
    return study.rows()


#: draws the Pareto plot of the summary's groups: ``plot(groups, path, title=...)`` (the render layer's
#: ``plot_pareto``, passed in by the caller: a lab module never imports the layer that renders it)
PlotPareto = Callable[..., None]


def write_results(study: Study, rows: list[dict[str, Any]], *, plot: PlotPareto | None = None) -> None:
    """results.json, results.csv, summary.md and (given ``plot``) pareto.png in the study folder."""
    write_json(study.out / "results.json", {"setup": study.setup.to_json(), "rows": rows})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(study.out / "results.csv") as tmp:
        tmp.write_text(text.getvalue())
    groups = summarize(rows)
    with atomic_path(study.out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(groups, study.setup))
    if plot is not None and any(g["n"] for g in groups):
        plot(groups, study.out / "pareto.png", title=f"{study.setup.data} at {study.setup.input_size[0]} px")


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _is_baseline(row: dict[str, Any]) -> bool:
    """A cell of a recipe without steps (rows written before the flag existed: the label ``baseline``)."""
    return bool(row.get("is_baseline", row["recipe"] == "baseline"))


def _mean(values: list[Any], *, median: bool = False) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return statistics.median(known) if median else statistics.fmean(known)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model x recipe: accuracy mean and standard deviation over seeds, cost (means over seeds: an
    input-adaptive model's FLOPs differ per seed), deltas to the model's baseline (accuracy over the seeds
    both finished), and whether the variant is on the Pareto front (no other variant is at least as accurate
    and cheaper): ``pareto`` among the variants of the same model, ``pareto_all`` among all of the study."""
    keys = list(dict.fromkeys((r["model"], r["recipe"]) for r in rows))
    groups = []
    for model, recipe in keys:
        cells = [r for r in rows if r["model"] == model and r["recipe"] == recipe]
        ok = [r for r in cells if r["status"] == "ok"]
        accuracy = [r["test_accuracy"] for r in ok]
        is_baseline = any(_is_baseline(r) for r in cells)
        groups.append({
            "model": model, "recipe": recipe, "n": len(ok), "failed": len(cells) - len(ok),
            "errors": sorted({r["error"] for r in cells if r["status"] != "ok"}),
            "accuracy": statistics.fmean(accuracy) if accuracy else None,
            "accuracy_std": _spread(accuracy) if accuracy else None,
            "by_seed": {r["seed"]: r["test_accuracy"] for r in ok},
            "params": _mean([r["params"] for r in ok]), "flops": _mean([r["flops"] for r in ok]),
            "latency_ms_b1": _mean([r["latency_ms_b1"] for r in ok], median=True),
            "latency_ms_b32": _mean([r["latency_ms_b32"] for r in ok], median=True),
            "train_s": _mean([r["train_s"] for r in ok]),
            "border_layer_min": ok[0].get("border_layer_min") if ok else None,
            "is_baseline": is_baseline,
            # a recipe that changed nothing for this model: its cells are the baseline's
            "same_as_baseline": bool(ok) and not is_baseline and all(r.get("same_as_baseline") for r in ok),
        })  # fmt: skip
    for group in groups:
        base = next((g for g in groups if g["model"] == group["model"] and g["is_baseline"]), None)
        paired = sorted(set(group["by_seed"]) & set(base["by_seed"])) if base is not None else []
        group["delta_accuracy"] = (
            statistics.fmean(group["by_seed"][s] - base["by_seed"][s] for s in paired) if paired else None
        )
        for key in ("params", "flops", "latency_ms_b1", "latency_ms_b32"):
            ready = paired and group[key] is not None and base[key]
            group[f"delta_{key}_percent"] = 100 * (group[key] - base[key]) / base[key] if ready else None
    measured = [g for g in groups if g["n"] and not g["same_as_baseline"]]
    for group in groups:  # the front among the model's own variants, and among every variant of the study
        rivals = [o for o in measured if o is not group]
        group["pareto"] = group in measured and not any(
            _dominates(o, group) for o in rivals if o["model"] == group["model"]
        )
        group["pareto_all"] = group in measured and not any(_dominates(o, group) for o in rivals)
    return groups


def _dominates(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-9) -> bool:
    """``a`` costs no more and is no less accurate than ``b``, and is strictly better in one of them;
    accuracies are means of float fractions, so equality is up to ``tol``."""
    cheaper, costs_no_more = a["flops"] < b["flops"], a["flops"] <= b["flops"]
    more_accurate, as_accurate = a["accuracy"] > b["accuracy"] + tol, a["accuracy"] >= b["accuracy"] - tol
    return costs_no_more and as_accurate and (cheaper or more_accurate)


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def summary_markdown(groups: list[dict[str, Any]], setup: StudySetup) -> str:
    h, w = setup.input_size
    lines = [
        "# Study summary",
        "",
        f"Data `{setup.data}` at {h}x{w}; {setup.epochs} epochs, SGD lr {setup.lr}, momentum {setup.momentum}, "
        f"batch {setup.batch_size}"
        + (f", at most {setup.max_batches} batches per epoch" if setup.max_batches else "")
        + ("; only the head trained" if setup.finetune_head else "")
        + ".",
        "Accuracy: test top-1, mean ± standard deviation over seeds. FLOPs: fvcore, one multiply-add = one flop, "
        "per image (for input-adaptive models the mean over the test images). "
        "Latency: CPU, median of repeated runs after warm-up. Deltas against the same model's `baseline`.",
        "",
        "| model | recipe | seeds | accuracy | Δ acc (pp) | params | Δ params | FLOPs | Δ FLOPs | latency b1 (ms) "
        "| Δ b1 | latency b32 (ms) | train (s) | b_min | front (model) | front (all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        if not g["n"]:
            lines.append(f"| {g['model']} | {g['recipe']} | 0 ({g['failed']} failed) | - | - | - | - | - | - | - | - "
                         "| - | - | - | - | - |")  # fmt: skip
            continue
        reference = g["is_baseline"] or g["same_as_baseline"]
        if reference:  # no deltas to show
            g = {**g, **{k: None for k in g if k.startswith("delta_")}}
        delta = "-" if g["delta_accuracy"] is None else f"{100 * g['delta_accuracy']:+.2f}"
        seeds = str(g["n"]) + (f" ({g['failed']} failed)" if g["failed"] else "")
        recipe = g["recipe"] + (" (no change)" if g["same_as_baseline"] else "")
        lines.append(
            f"| {g['model']} | {recipe} | {seeds} "
            f"| {100 * g['accuracy']:.2f} ± {100 * g['accuracy_std']:.2f} | {delta} | {g['params'] / 1e6:.2f} M "
            f"| {_pct(g['delta_params_percent'])} | {g['flops'] / 1e6:.1f} M | {_pct(g['delta_flops_percent'])} "
            f"| {_num(g['latency_ms_b1'], '.2f')} | {_pct(g['delta_latency_ms_b1_percent'])} "
            f"| {_num(g['latency_ms_b32'], '.1f')} | {_num(g['train_s'], '.0f')} | {g['border_layer_min'] or 'none'} "
            f"| {'yes' if g['pareto'] else ''} | {'yes' if g['pareto_all'] else ''} |"
        )
    failures = [(g, e) for g in groups for e in g["errors"]]
    if failures:
        lines += ["", "Failed cells:", ""]
        lines += [f"- {g['model']} / {g['recipe']}: {e}" for g, e in failures]
    verdicts = _verdicts(groups)
    if verdicts:
        lines += ["", "Against the baseline:", "", *verdicts]
    return "\n".join(lines) + "\n"


def _verdicts(groups: list[dict[str, Any]]) -> list[str]:
    """One sentence per rewritten variant: cheaper or not, as accurate or not (within one spread)."""
    lines = []
    for g in groups:
        if g["is_baseline"] or g["delta_accuracy"] is None:
            continue
        if g["same_as_baseline"]:
            lines.append(
                f"- {g['model']} {g['recipe']}: changes nothing for this model (its results are the baseline's)."
            )
            continue
        base = next(b for b in groups if b["model"] == g["model"] and b["is_baseline"])
        noise = max(g["accuracy_std"], base["accuracy_std"])
        if g["delta_accuracy"] > noise:
            accuracy = "more accurate"
        elif g["delta_accuracy"] < -noise:
            accuracy = "less accurate"
        else:
            accuracy = "as accurate (within one standard deviation)"
        if min(g["n"], base["n"]) < 2:
            accuracy += " by one seed, with no spread to judge the difference by"
        cost = (
            "cheaper"
            if g["flops"] < base["flops"]
            else "more expensive"
            if g["flops"] > base["flops"]
            else "as costly"
        )
        front = "on the model's Pareto front" if g["pareto"] else "not on the model's Pareto front"
        lines.append(
            f"- {g['model']} {g['recipe']}: {cost} ({_pct(g['delta_flops_percent'])} FLOPs, "
            f"{_pct(g['delta_params_percent'])} params) and {accuracy} ({100 * g['delta_accuracy']:+.2f} pp); {front}."
        )
    return lines
