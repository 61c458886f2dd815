"""What ``rewriter optimize`` chooses for the papers' and torchvision's models at 32 and 64 px.

Every model is built with a 10-class head (CIFAR-sized problems), searched with the default space and no
budget (objective FLOPs), and the chosen candidate (cost first, the default) rewritten for real. The table
gives the choice and the cost before and after: params, FLOPs (fvcore's convention, counted on the meta
device), unproductive layers, and the r_min of the last conv/pool layer against the input; and what
``--prefer fit`` would choose (the default before issue 20), with its FLOPs and fit.

Usage:
    python benchmarks/optimize_choices.py
    python benchmarks/optimize_choices.py --models resnet18 --sizes 32

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/optimize_choices.json``.
"""

from __future__ import annotations

import argparse
import os

from _common import HERE, machine, stamp, write_section

import rewriter
from rewriter._files import write_json
from rewriter._text import human, one_line

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "cifar_vgg16", "mpnet18"]


def _fit(figures) -> str:
    if figures is None or figures.final_r_min is None:
        return "-"
    return f"{figures.final_r_min[0]:g}/{figures.fit:.0%}"


def choose(name: str, size: int) -> dict:
    model, _ = rewriter.load_model(name, num_classes=10)
    try:
        result = rewriter.optimize_model(model, input_size=size, name=name)
    except rewriter.RewriterError as err:
        return {"model": name, "input_size": size, "error": one_line(err, limit=160)}
    base, chosen = result.baseline.figures, result.chosen.figures if result.chosen else None
    fit_first = result.choices["fit"].chosen
    return {
        "model": name,
        "input_size": size,
        "status": result.choice.status,
        "chosen": result.chosen.label if result.chosen else None,
        "candidates": len(result.candidates),
        "seconds": round(result.seconds, 1),
        "before": base.to_json(),
        "after": chosen.to_json() if chosen else None,
        "fit_before": _fit(base),
        "fit_after": _fit(chosen),
        "reason": result.choice.reason,
        "fit_first": None if fit_first is None else fit_first.label,
        "fit_first_after": None if fit_first is None else fit_first.figures.to_json(),
        "fit_first_fit": _fit(None if fit_first is None else fit_first.figures),
    }


def _line(row: dict) -> str:
    if "error" in row:
        return f"| {row['model']} | {row['input_size']} | does not run: {row['error']} | | | | | | |"
    b, a = row["before"], row["after"] or {}
    choice = "kept (no unproductive layer)" if row["status"] == "baseline" else f"`{row['chosen']}`"
    return (
        f"| {row['model']} | {row['input_size']} | {choice} | {human(b['params'])} -> {human(a.get('params'))} | "
        f"{human(b['flops'])} -> {human(a.get('flops'))} | {b['unproductive_layers']} -> "
        f"{a.get('unproductive_layers', '-')} | {row['fit_before']} -> {row['fit_after']} | "
        f"{row['candidates']} in {row['seconds']} s | {_fit_first(row)} |"
    )


def _fit_first(row: dict) -> str:
    if row["fit_first"] is None or row["fit_first"] == row["chosen"]:
        return "the same"
    return f"`{row['fit_first']}`: {human(row['fit_first_after']['flops'])} FLOPs, {row['fit_first_fit']}"


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.1f}" for v in load) + " over 1, 5, 15 min (other jobs ran beside it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    args = parser.parse_args()
    rows = []
    for name in args.models:
        for size in args.sizes:
            rows.append(choose(name, size))
            print(_line(rows[-1]), flush=True)
    load = os.getloadavg()
    table = [
        "| model | size | choice | params | FLOPs | unproductive | last layer r_min / fit | candidates "
        "| fit first (`--prefer fit`) |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_line(row) for row in rows),
    ]
    body = "\n".join(
        [
            stamp(
                "optimize_choices", f" on {machine()}; load average {_load(load)} (times are under that load)"
            ),
            "",
            "10-class heads, default search space, objective FLOPs, no budget, cost first (the default: never "
            "above the baseline's FLOPs); before -> after; the last column is what `--prefer fit` chooses.",
            "",
            *table,
        ]
    )
    write_json(HERE / "results" / "optimize_choices.json", {"rows": rows, "machine": machine()})
    print(write_section("optimize_choices", "what the optimizer chooses", body))


if __name__ == "__main__":
    main()
