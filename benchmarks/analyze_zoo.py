"""Time ``rewriter.analyze`` on every torchvision classification model at 32 and 224 px.

Two figures per model and size, each the median of ``--repeats`` runs: the analysis itself (trace, shape
propagation, receptive fields, border layers; ``analyze(..., flops=False)``) and fvcore's FLOP count
(``count_flops``, one jit trace and forward pass), which ``rewriter analyze`` adds by default. Building the
model is not timed. Models that do not run at a size (alexnet at 32 px, ...) are timed up to their error,
which includes the search for a size they do run at.

Usage:
    python benchmarks/analyze_zoo.py                  # all 80 models, 32 and 224 px, 3 repeats
    python benchmarks/analyze_zoo.py --models 'resnet*' --repeats 1

Writes ``benchmarks/results/analyze_zoo.json`` and the results section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json

from _common import HERE, machine, median_time, stamp, write_section
from tqdm import tqdm

import rewriter
from rewriter._files import write_json
from rewriter.analysis.cost import count_flops
from rewriter.models.sources import load_model, torchvision_models


def analysis_time(model, size: int, repeats: int) -> tuple[float, str | None]:
    """Median seconds of one analysis after a first run, or the error the first run raised."""
    try:
        rewriter.analyze(model, size, flops=False)
    except rewriter.RewriterError as err:
        return 0.0, str(err)
    return median_time(rewriter.analyze, model, size, flops=False, repeats=repeats), None


def run(models: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in tqdm(models, desc="models", unit="model"):
        model, _ = load_model(name)
        for size in sizes:
            analysis_s, error = analysis_time(model, size, repeats)
            flops_s = 0.0 if error else median_time(count_flops, model, (size, size), repeats=repeats)
            rows.append(
                {"model": name, "size": size, "analysis_s": analysis_s, "flops_s": flops_s, "error": error}
            )
    return rows


def markdown(rows: list[dict], sizes: list[int], repeats: int) -> str:
    lines = [stamp("analyze_zoo", f" on {machine()}; median of {repeats} runs"), ""]
    lines.append(
        "| size | analysis (s) | fvcore FLOPs (s) | both (s) | models that do not run at this size |"
    )
    lines.append("|---|---|---|---|---|")
    for size in sizes:
        at = [r for r in rows if r["size"] == size]
        analysis, flops = sum(r["analysis_s"] for r in at), sum(r["flops_s"] for r in at)
        failed = ", ".join(r["model"] for r in at if r["error"]) or "-"
        lines.append(f"| {size} | {analysis:.1f} | {flops:.1f} | {analysis + flops:.1f} | {failed} |")
    analysis, flops = sum(r["analysis_s"] for r in rows), sum(r["flops_s"] for r in rows)
    lines.append(f"| all | {analysis:.1f} | {flops:.1f} | {analysis + flops:.1f} | |")
    lines += ["", "Per model (seconds, analysis / fvcore):", ""]
    lines.append("| model | " + " | ".join(f"{s} px" for s in sizes) + " |")
    lines.append("|---|" + "---|" * len(sizes))
    for name in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for size in sizes:
            r = next(r for r in rows if r["model"] == name and r["size"] == size)
            cells.append(f"{r['analysis_s']:.2f} / " + ("error" if r["error"] else f"{r['flops_s']:.2f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="*", help="shell-style filter over torchvision model names")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not update the README")
    args = parser.parse_args()
    models = [m for m in torchvision_models() if fnmatch.fnmatchcase(m, args.models)]
    rows = run(models, args.sizes, args.repeats)
    section = markdown(rows, args.sizes, args.repeats)
    print(section)
    if not args.no_write:
        write_json(
            HERE / "results" / "analyze_zoo.json",
            {"machine": machine(), "repeats": args.repeats, "rows": rows},
        )
        write_section("analyze_zoo", "analyzing every torchvision classifier", section)
    print(
        json.dumps(
            {"analysis_s": sum(r["analysis_s"] for r in rows), "flops_s": sum(r["flops_s"] for r in rows)}
        )
    )


if __name__ == "__main__":
    main()
