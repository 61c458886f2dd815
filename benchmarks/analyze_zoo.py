"""Time the analysis of every torchvision classification model at 32 and 224 px, FLOPs included.

Per model, each the median of ``--repeats`` runs: tracing it once (``rewriter.trace_model``), then
``TracedModel.analyze`` at each size (shape pass on the meta device, receptive fields, border layers and
FLOPs in fvcore's convention, counted in the same pass). "Trace once, both sizes" is what a caller that
analyzes one architecture at several sizes pays; ``rewriter.analyze`` traces at every call, so one call
per size costs a trace more per size. Building the model is not timed. Models that do not run at a size
(alexnet at 32 px, ...) are timed up to their error, which includes the search for a size they do run at.

Usage:
    python benchmarks/analyze_zoo.py                  # all 80 models, 32 and 224 px, 3 repeats
    python benchmarks/analyze_zoo.py --models 'resnet*' --repeats 1

Writes ``benchmarks/results/analyze_zoo.json`` and the results section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os

from _common import machine, median_time, publish, stamp, zoo_parser
from tqdm import tqdm

import rewriter
from rewriter.models.sources import load_model, torchvision_models


def analysis_time(traced: rewriter.TracedModel, size: int, repeats: int) -> tuple[float, str | None]:
    """Median seconds of one analysis (FLOPs included), or of running into the error, with the error."""
    try:
        traced.analyze(size)
    except rewriter.RewriterError as err:
        return median_time(_failing, traced, size, repeats=repeats), str(err)
    return median_time(traced.analyze, size, repeats=repeats), None


def _failing(traced: rewriter.TracedModel, size: int) -> None:
    with contextlib.suppress(rewriter.RewriterError):
        traced.analyze(size)


def run(models: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in tqdm(models, desc="models", unit="model"):
        model, _ = load_model(name)
        trace_s = median_time(rewriter.trace_model, model, repeats=repeats)
        traced = rewriter.trace_model(model)
        row = {"model": name, "trace_s": trace_s, "sizes": {}}
        for size in sizes:
            seconds, error = analysis_time(traced, size, repeats)
            row["sizes"][str(size)] = {"analysis_s": seconds, "error": error}
        rows.append(row)
    return rows


def totals(rows: list[dict], sizes: list[int]) -> dict[str, float]:
    trace = sum(r["trace_s"] for r in rows)
    per_size = {s: sum(r["sizes"][str(s)]["analysis_s"] for r in rows) for s in sizes}
    return {
        "trace_s": trace,
        **{f"analysis_{s}_s": t for s, t in per_size.items()},
        "trace_once_all_sizes_s": trace + sum(per_size.values()),
        "analyze_per_size_s": trace * len(sizes) + sum(per_size.values()),
    }


def markdown(rows: list[dict], sizes: list[int], repeats: int, load: tuple[float, ...]) -> str:
    t = totals(rows, sizes)
    lines = [
        stamp("analyze_zoo", f" on {machine()}; median of {repeats} runs; load average before the run "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; the machine is shared)"),
        "",
        "| | seconds | models that do not run at this size |",
        "|---|---|---|",
        f"| trace (once per model) | {t['trace_s']:.1f} | |",
    ]  # fmt: skip
    for size in sizes:
        failed = ", ".join(r["model"] for r in rows if r["sizes"][str(size)]["error"]) or "-"
        lines.append(f"| analysis with FLOPs at {size} px | {t[f'analysis_{size}_s']:.1f} | {failed} |")
    lines += [
        f"| **trace once, all sizes** | **{t['trace_once_all_sizes_s']:.1f}** | target: under 20 s |",
        f"| `rewriter.analyze` once per size (a trace each) | {t['analyze_per_size_s']:.1f} | |",
        "",
        "Per model (seconds: trace, then the analysis at each size; `error`: timed up to the error):",
        "",
        "| model | trace | " + " | ".join(f"{s} px" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for r in rows:
        cells = [
            f"{c['analysis_s']:.3f}" + (" error" if c["error"] else "")
            for c in (r["sizes"][str(s)] for s in sizes)
        ]
        lines.append(f"| {r['model']} | {r['trace_s']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = zoo_parser(__doc__, repeats=3).parse_args()
    models = [m for m in torchvision_models() if fnmatch.fnmatchcase(m, args.models)]
    load = os.getloadavg()
    rows = run(models, args.sizes, args.repeats)
    section = markdown(rows, args.sizes, args.repeats, load)
    print(section)
    if not args.no_write:
        results = {"repeats": args.repeats, "load": load, "rows": rows}
        publish("analyze_zoo", "analyzing every torchvision classifier", section, results)
    print(json.dumps(totals(rows, args.sizes)))


if __name__ == "__main__":
    main()
