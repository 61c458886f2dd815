"""How fast ``rewriter optimize`` evaluates candidates, and how much memory a search holds.

Targets (issue 12): at least 50 candidates per second for resnet18 at 32 px; the full default search for
resnet50 at 64 px, the real rewrite of the chosen candidate included, in under 30 s on a 2-core machine; the
memory of a search bounded (candidates are evaluated one at a time on the meta device, only the models on
the current path are kept). For scale, in the same run: one ``rewriter.analyze`` of the baseline (meta
FLOPs), so that a candidate's cost can be read as a number of analyses whatever the machine's load; and a
``sweep`` of resnet50 over 16 sizes.

Usage:
    python benchmarks/optimize_speed.py            # median of 3 runs each
    python benchmarks/optimize_speed.py --repeats 1

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/optimize_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

from _common import HERE, machine, median_time, stamp, write_section

import rewriter
from rewriter._files import write_json


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def search(name: str, size: int, *, dry_run: bool, repeats: int) -> dict:
    model, _ = rewriter.load_model(name, num_classes=10)
    times, result = [], None
    before = _rss_mib()
    for _ in range(repeats):
        start = time.perf_counter()
        result = rewriter.optimize_model(model, input_size=size, name=name, dry_run=dry_run)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    statuses = [c.status for c in result.candidates]
    analysis = median_time(rewriter.analyze, model, size, repeats=repeats)
    return {
        "model": name,
        "input_size": size,
        "rewrite_of_the_chosen": not dry_run,
        "seconds": round(seconds, 2),
        "candidates": len(statuses),
        "evaluated": statuses.count("ok"),
        "duplicates": statuses.count("duplicate"),
        "dropped": statuses.count("dropped"),
        "candidates_per_s": round(len(statuses) / seconds, 1),
        "analysis_s": round(analysis, 4),
        "analyses_per_candidate": round(seconds / len(statuses) / analysis, 2),
        "peak_rss_growth_mib": round(_rss_mib() - before, 1),
        "chosen": result.chosen.label if result.chosen else None,
    }


def sweep_time(repeats: int) -> float:
    model, _ = rewriter.load_model("resnet50")
    sizes = list(range(32, 513, 32))
    return median_time(rewriter.sweep, model, sizes, repeats=repeats)


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.1f}" for v in load) + " over 1, 5, 15 min (other jobs ran beside it)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = [
        search("resnet18", 32, dry_run=True, repeats=args.repeats),
        search("resnet50", 64, dry_run=False, repeats=args.repeats),
    ]
    swept = sweep_time(args.repeats)
    load = os.getloadavg()
    table = [
        "| model | size | what | s | candidates (evaluated / duplicates / dropped) | candidates/s | "
        "one analysis (s) | analyses per candidate | peak RSS growth (MiB) | chosen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        what = "search + real rewrite of the chosen" if row["rewrite_of_the_chosen"] else "search (dry run)"
        table.append(
            f"| {row['model']} | {row['input_size']} | {what} | {row['seconds']} | {row['candidates']} "
            f"({row['evaluated']} / {row['duplicates']} / {row['dropped']}) | {row['candidates_per_s']} | "
            f"{row['analysis_s']} | {row['analyses_per_candidate']} | {row['peak_rss_growth_mib']} | "
            f"`{row['chosen']}` |"
        )
    body = "\n".join(
        [
            stamp("optimize_speed", f" on {machine()}; median of {args.repeats} runs; load {_load(load)}"),
            "",
            *table,
            "",
            f"`rewriter.sweep(resnet50, 32..512 px step 32)` (16 sizes, one trace): {swept:.2f} s.",
        ]
    )
    write_json(HERE / "results" / "optimize_speed.json", {"rows": rows, "sweep_resnet50_16_sizes_s": swept,
                                                          "load_average": load, "machine": machine()})  # fmt: skip
    print(write_section("optimize_speed", "candidates per second, and a whole search", body))


if __name__ == "__main__":
    main()
