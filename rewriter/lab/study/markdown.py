"""The files a study writes from its cells: ``results.json``, ``results.csv``, ``summary.md`` (the table,
convergence, failures and one verdict per rewritten variant) and, given the plot functions, ``pareto.png``
and ``curves.png``."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence

from ..._files import atomic_path, write_json
from ...engine.report import NOISY_SPREAD
from ..convergence import MARKS, ConvergenceRule, advice
from .cells import LATENCY_THREADS
from .grid import Study, StudySetup
from .record import COLUMNS, CellRow, csv_row
from .summary import Group, display_names, summarize

#: draws the Pareto plot of the summary's groups: ``plot(groups, path, title=..., recipes=...)`` with each
#: group as a dict (``Group.to_json``) and ``recipes`` each label's steps; the render layer's
#: ``plot_pareto``, passed in by the caller: a lab module never imports the layer that renders it
PlotPareto = Callable[..., None]
#: draws the training curves of the cells: ``curves(rows, path, title=...)`` (``rewriter.render.plot_curves``)
PlotCurves = Callable[..., None]

RULE = ConvergenceRule()


def write_results(
    study: Study,
    rows: Sequence[CellRow],
    *,
    plot: PlotPareto | None = None,
    curves: PlotCurves | None = None,
    lr: float | None = None,
) -> None:
    """results.json, results.csv, summary.md, (given ``plot``) pareto.png and (given ``curves``) curves.png
    in the study folder; ``lr`` is the rate every cell trained with when the setup says ``auto``."""
    setup = study.setup
    write_json(
        study.out / "results.json", {"setup": setup.to_json(), "lr": lr, "rows": [r.to_json() for r in rows]}
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(csv_row(r) for r in rows)
    with atomic_path(study.out / "results.csv") as tmp:
        tmp.write_text(text.getvalue())
    groups = summarize(rows)
    recipes = {v.label: v.recipe.text() for v in study.variants}
    with atomic_path(study.out / "summary.md") as tmp:
        tmp.write_text(summary_markdown(groups, setup, lr=lr, ignored=study.ignored, recipes=recipes))
    title = f"{setup.data} at {setup.input_size[0]} px"
    histories = sorted({h for g in groups for h in g.histories if h != "fresh"})
    if histories:  # an extended cell is no fresh run of its epochs: the plots say so too
        title += f" (cells extended {', '.join(histories)} epochs: see summary.md)"
    if plot is not None and any(g.n for g in groups):
        plot([g.to_json() for g in groups], study.out / "pareto.png", title=title, recipes=recipes)
    if curves is not None and any(r.curve for r in rows):
        curves(rows, study.out / "curves.png", title=f"{title}: training curves")


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def _setup_line(setup: StudySetup, lr: float | None) -> str:
    h, w = setup.input_size
    rate = (
        f"lr {lr:.3g} (found by a range test on the baselines)" if setup.auto_lr and lr else f"lr {setup.lr}"
    )
    warmup = f", {setup.warmup_epochs} warm-up epoch" + ("s" if setup.warmup_epochs != 1 else "")
    return (
        f"Data `{setup.data}` at {h}x{w}; {setup.epochs} epochs, SGD {rate}, momentum {setup.momentum}, "
        f"batch {setup.batch_size}" + (warmup if setup.warmup_epochs else "")
        + (f", at most {setup.max_batches} batches per epoch" if setup.max_batches else "")
        + ("; only the head trained" if setup.finetune_head else "")
        + f"; precision {setup.precision}" + _samples(setup) + "."
    )  # fmt: skip


def _samples(setup: StudySetup) -> str:
    parts = [f"a stratified sample of {n} {split} images (seed 0)"
             for split, n in (("training", setup.train_samples), ("test", setup.test_samples)) if n]  # fmt: skip
    every = {0: "; the test split scored after the last epoch only", 1: ""}
    scored = every.get(setup.test_every, f"; the test split scored every {setup.test_every} epochs")
    return ("; " + " and ".join(parts) if parts else "") + scored


def marks_text(group: Group) -> str:
    """``3/3`` when every seed converged, else the counts of the other marks."""
    if not group.n:
        return "-"
    done = group.marks.get("converged", 0)
    others = [f"{group.marks[m]} {m}" for m in MARKS[1:] if group.marks.get(m)]
    if group.marks.get(None):
        others.append(f"{group.marks[None]} not recorded")
    return f"{done}/{group.n}" + (f" ({', '.join(others)})" if others else "")


def _row(g: Group, name: str) -> str:
    if not g.n:
        return f"| {name} | {g.recipe} | 0 ({g.failed} failed) |" + " - |" * 14
    reference = g.is_baseline or g.same_as_baseline  # no deltas to show
    delta = "-" if g.delta_accuracy is None or reference else f"{100 * g.delta_accuracy:+.2f}"
    seeds = str(g.n) + (f" ({g.failed} failed)" if g.failed else "")
    recipe = g.recipe + (" (no change)" if g.same_as_baseline else "")
    recipe += f" (extended {', '.join(h for h in g.histories if h != 'fresh')})" if g.extended else ""
    recipe += (
        f" (not extended: kept at {', '.join(map(str, g.not_extended))} epochs)" if g.not_extended else ""
    )

    def d(value: float | None) -> str:
        return "-" if reference else _pct(value)

    noisy = " noisy" if g.latency_noisy else ""

    return (
        f"| {name} | {recipe} | {seeds} | {marks_text(g)} "
        f"| {100 * g.accuracy:.2f} ± {100 * g.accuracy_std:.2f} | {delta} | {g.params / 1e6:.2f} M "
        f"| {d(g.delta_params_percent)} | {g.flops / 1e6:.1f} M | {d(g.delta_flops_percent)} "
        f"| {_num(g.latency_ms_b1, '.2f')}{noisy} | {d(g.delta_latency_ms_b1_percent)} "
        f"| {_num(g.latency_ms_b32, '.1f')}{noisy} | {_num(g.train_s, '.0f')} | {g.border_layer_min or 'none'} "
        f"| {'yes' if g.pareto else ''} | {'yes' if g.pareto_all else ''} |"
    )


def summary_markdown(
    groups: Sequence[Group],
    setup: StudySetup,
    *,
    lr: float | None = None,
    ignored: Sequence[str] = (),
    recipes: Mapping[str, str] | None = None,
) -> str:
    """The summary as Markdown; ``recipes`` (label -> its steps, ``Recipe.text``) lists what each label is."""
    names = display_names(groups)
    chances = sorted({round(g.chance, 4) for g in groups if g.chance is not None})
    lines = [
        "# Study summary",
        "",
        _setup_line(setup, lr),
        "Accuracy: test top-1, mean ± standard deviation over seeds. FLOPs: fvcore, one multiply-add = one flop, "
        "per image (for input-adaptive models the mean over the test images). "
        f"Latency: CPU, {LATENCY_THREADS} thread{'s' if LATENCY_THREADS > 1 else ''}, median of repeated runs "
        f"after warm-up; `noisy` marks a spread over {NOISY_SPREAD:.0%} of the median, and no latency delta is "
        "computed from a noisy figure. Deltas against the same model's `baseline`.",
    ]
    if chances:
        lines.append(f"Converged: seeds whose training converged; {RULE.describe(chances[0])}.")
    lines += [
        "",
        "| model | recipe | seeds | converged | accuracy | Δ acc (pp) | params | Δ params | FLOPs | Δ FLOPs "
        "| latency b1 (ms) | Δ b1 | latency b32 (ms) | train (s) | b_min | front (model) | front (all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(g, names[(g.model, g.source)]) for g in groups),
    ]
    spelled = {label: text for label, text in (recipes or {}).items() if text != label}
    if spelled:
        lines += ["", "Recipes:", "", *(f"- `{label}`: {text}" for label, text in spelled.items())]
    lines += _extended_lines(groups)
    failures = [(g, e) for g in groups for e in g.errors]
    if failures:
        lines += ["", "Failed cells:", ""]
        lines += [f"- {names[(g.model, g.source)]} / {g.recipe}: {e}" for g, e in failures]
    if ignored:
        lines += ["", "Files in cells/ that are no cell record (ignored):", "", *(f"- {e}" for e in ignored)]
    verdicts = _verdicts(groups, names)
    if verdicts:
        lines += ["", "Against the baseline:", "", *verdicts]
    return "\n".join(lines) + "\n"


def _extended_lines(groups: Sequence[Group]) -> list[str]:
    """What the extensions of the study's cells did to their learning rate, and how close they are to
    fresh runs of their epochs."""
    from .extension import RULE

    extensions = list(dict.fromkeys(e for g in groups for e in g.extensions))
    if not extensions:
        return []
    lines = ["", f"Extended cells (`--extend`): {RULE}.", ""]
    for e in extensions:
        fresh = f"a fresh {e.to_epochs}-epoch run's"
        close = (
            f"{e.epochs_off_fresh} of their first {e.from_epochs} epochs ran at another rate than {fresh}, so "
            "they are close to such runs, not equal" if e.epochs_off_fresh
            else f"every epoch ran at {fresh} rate, so they are such runs"
        )  # fmt: skip
        lines.append(
            f"- trained for {e.from_epochs} epochs, continued to {e.to_epochs}: the rate went from "
            f"{e.lr_last:.3g} (epoch {e.from_epochs}) to {e.lr_next:.3g} (epoch {e.from_epochs + 1}, a fresh "
            f"{e.to_epochs}-epoch run's rate there); {close}."
        )
    return lines


def _unconverged(group: Group) -> str:
    """``2 of 3 seeds (1 still improving, 1 not converged)``."""
    others = {m: c for m, c in group.marks.items() if m != "converged"}
    parts = ", ".join(f"{c} {m or 'not recorded'}" for m, c in others.items())
    return f"{sum(others.values())} of {group.n} seeds ({parts})"


def _withheld(base: Group, name: str) -> str:
    hints = sorted({advice(m) for m in base.marks if m not in (None, "converged")} - {""})
    change = "; ".join(hints) or "run the baseline again with this version, which records its curve"
    if "--epochs" in change:  # the way to follow that advice without training every cell again
        change += (
            " (`--extend --epochs N` trains the cells on from their checkpoints, kept by --keep-checkpoints)"
        )
    return (
        f"- {name}: no verdict: its baseline is not converged in {_unconverged(base)}, so a variant that "
        f"learned would be compared with one that did not; {change}."
    )


def _verdicts(groups: Sequence[Group], names: dict[tuple[str, str], str]) -> list[str]:
    """One sentence per rewritten variant: cheaper or not, as accurate or not (within one spread); none for
    a model whose baseline did not converge (one line that says why and what to change)."""
    lines = []
    for base in [g for g in groups if g.is_baseline and g.n]:
        name = names[(base.model, base.source)]
        variants = [
            g for g in groups if (g.model, g.source) == (base.model, base.source) and not g.is_baseline
        ]
        lines += [_verdict(g, base, name) for g in variants if g.same_as_baseline]
        compared = [g for g in variants if not g.same_as_baseline and g.delta_accuracy is not None]
        if compared and not base.converged:
            lines.append(_withheld(base, name))
        elif compared:
            lines += [_verdict(g, base, name) for g in compared]
    return lines


def _verdict(g: Group, base: Group, name: str) -> str:
    if g.same_as_baseline:
        return f"- {name} {g.recipe}: changes nothing for this model (its results are the baseline's)."
    noise = max(g.accuracy_std, base.accuracy_std)
    if g.delta_accuracy > noise:
        accuracy = "more accurate"
    elif g.delta_accuracy < -noise:
        accuracy = "less accurate"
    else:
        accuracy = "as accurate (within one standard deviation)"
    if min(g.n, base.n) < 2:
        accuracy += " by one seed, with no spread to judge the difference by"
    cost = "cheaper" if g.flops < base.flops else "more expensive" if g.flops > base.flops else "as costly"
    front = "on the model's Pareto front" if g.pareto else "not on the model's Pareto front"
    caveat = "" if g.converged else f"; the variant itself did not converge in {_unconverged(g)}"
    if g.histories != base.histories:  # one extended, the other not (or otherwise): not like for like
        caveat += (
            f"; trained otherwise than its baseline ({', '.join(g.histories)} epochs against "
            f"{', '.join(base.histories)}), so the difference mixes the recipe with the schedule"
        )
    return (
        f"- {name} {g.recipe}: {cost} ({_pct(g.delta_flops_percent)} FLOPs, {_pct(g.delta_params_percent)} params) "
        f"and {accuracy} ({100 * g.delta_accuracy:+.2f} pp); {front}{caveat}."
    )
