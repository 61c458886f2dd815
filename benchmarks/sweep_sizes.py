"""One trace, many sizes: a resolution sweep, and the rate of candidate evaluations an optimizer gets.

Two figures, each the median of ``--repeats`` runs, in one process:

- a sweep of resnet50 over 16 sizes, 32 to 512 px in steps of 32: ``rewriter.trace_model`` once, then
  ``TracedModel.analyze`` (FLOPs included) at every size. Target: under 2 s.
- candidate evaluations per second: ``TracedModel.analyze(32)`` on resnet18, FLOPs included, what
  ``rewriter optimize`` calls per candidate. Target: at least 50 per second.

For comparison, the sweep with ``rewriter.analyze`` (a trace per size) is timed too.

Usage:
    python benchmarks/sweep_sizes.py
    python benchmarks/sweep_sizes.py --repeats 3 --no-write

Writes ``benchmarks/results/sweep_sizes.json`` and its section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from _common import machine, median_time, publish, stamp

import rewriter
from rewriter.models.sources import load_model

SIZES = tuple(range(32, 513, 32))


def sweep(model, sizes=SIZES) -> list[rewriter.Analysis]:
    traced = rewriter.trace_model(model)
    return [traced.analyze(size) for size in sizes]


def sweep_retracing(model, sizes=SIZES) -> list[rewriter.Analysis]:
    return [rewriter.analyze(model, size) for size in sizes]


def evaluations_per_second(
    traced: rewriter.TracedModel, size: int, seconds: float = 2.0
) -> tuple[float, float]:
    """How many ``traced.analyze(size)`` calls complete per second of wall time, over about ``seconds``,
    and per second of this process's CPU time (what a machine shared with other work still gives)."""
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        traced.analyze(size)
        count += 1
    return count / (time.perf_counter() - start), count / (time.process_time() - cpu)


def run(repeats: int) -> dict:
    resnet50, _ = load_model("resnet50")
    resnet18, _ = load_model("resnet18")
    sweep(resnet50)  # warm-up
    borders = [(a.input_size[0], a.border_layer_min, a.flops) for a in sweep(resnet50)]
    traced = rewriter.trace_model(resnet18)
    traced.analyze(32)
    rates = [evaluations_per_second(traced, 32) for _ in range(repeats)]
    return {
        "sweep_s": median_time(sweep, resnet50, repeats=repeats),
        "sweep_retracing_s": median_time(sweep_retracing, resnet50, repeats=repeats),
        "evaluations_per_s": statistics.median(wall for wall, _ in rates),
        "evaluations_per_cpu_s": statistics.median(cpu for _, cpu in rates),
        "trace_and_analyze_per_s": 1
        / median_time(lambda: rewriter.trace_model(resnet18).analyze(32), repeats=20),
        "borders": borders,
    }


def markdown(result: dict, repeats: int, load: tuple[float, ...]) -> str:
    lines = [
        stamp("sweep_sizes", f" on {machine()}; median of {repeats} runs; load average before the run "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; the machine is shared)"),
        "",
        "| | figure | target |",
        "|---|---|---|",
        f"| resnet50, 16 sizes 32..512 px, one trace (s) | {result['sweep_s']:.2f} | under 2 s |",
        f"| the same with `rewriter.analyze` per size (s) | {result['sweep_retracing_s']:.2f} | |",
        f"| resnet18 at 32 px: `TracedModel.analyze` per second | {result['evaluations_per_s']:.0f} | at least 50 |",
        f"| the same per second of the process's CPU time | {result['evaluations_per_cpu_s']:.0f} | |",
        f"| resnet18 at 32 px: `trace_model` + `analyze` (a new architecture) per second | "
        f"{result['trace_and_analyze_per_s']:.0f} | |",
        "",
        "resnet50's b_min and FLOPs by size: "
        + ", ".join(f"{s}: {b or 'none'} ({f / 1e9:.2f} G)" for s, b, f in result["borders"]),
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not update the README")
    args = parser.parse_args()
    load = os.getloadavg()
    result = run(args.repeats)
    section = markdown(result, args.repeats, load)
    print(section)
    if not args.no_write:
        publish("sweep_sizes", "one trace, many sizes", section, {"load": load, **result})


if __name__ == "__main__":
    main()
