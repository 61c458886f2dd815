"""timm coverage: every family of the sweep (``tests/models/timm_zoo.py``) analyzed at 64 and 224 px, every
strategy at 64 px, and the pure CNNs' final-conv r_max against the gradient oracle; with the durations.

    python benchmarks/timm_coverage.py [--oracle] [--threads N]

Writes ``results/timm_coverage.json`` and this script's section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import HERE, machine, stamp, write_section

import rewriter
from rewriter._files import write_json
from tests.models.timm_zoo import FAMILIES, PURE_CNNS, build, final_conv, gradient_extent
from tests.strategies.test_timm_strategies import outcomes


def _short(message: str, width: int = 90) -> str:
    message = message.replace("|", "/")
    return message if len(message) <= width else message[: width - 3] + "..."


def analysis_status(name: str, size: int) -> str:
    try:
        analysis = rewriter.analyze(build(name, size), size, flops=False, name=name)
    except rewriter.RewriterError as err:
        return f"refused: {_short(str(err))}"
    count = len(analysis.warnings)
    return (
        "analyzed"
        if not count
        else f"analyzed, {count} warning{'s' * (count > 1)}: {_short(analysis.warnings[0], 60)}"
    )


def strategy_summary(name: str) -> str:
    result = outcomes(name)
    marks = {"rewritten": "R", "no-op": "N"}
    return " ".join(f"{label.split('-')[0][:5]}:{marks.get(v, 'X')}" for label, v in result.items())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--oracle", action="store_true", help="also run the gradient oracle on the pure CNNs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, times = [], {"analysis": 0.0, "strategies": 0.0, "oracle": 0.0}
    for family, name in sorted(FAMILIES.items()):
        start = time.perf_counter()
        statuses = [analysis_status(name, size) for size in (64, 224)]
        middle = time.perf_counter()
        strategies = strategy_summary(name)
        times["analysis"] += middle - start
        times["strategies"] += time.perf_counter() - middle
        rows.append(
            {"family": family, "model": name, "64": statuses[0], "224": statuses[1], "strategies": strategies}
        )
        print(family, name, statuses, strategies, flush=True)
    oracle = {}
    if args.oracle:
        for name in PURE_CNNS:
            start = time.perf_counter()
            model = build(name, 224, meta=False)
            layer = final_conv(rewriter.analyze(model, 224, flops=False))
            expected = tuple(int(r) for r in layer.r_out_max)
            measured = gradient_extent(model, layer.name, max(expected) + 64)
            oracle[name] = {"layer": layer.name, "analyzer": expected, "gradient": measured}
            times["oracle"] += time.perf_counter() - start
            print(name, oracle[name], flush=True)
    data = {
        "machine": machine(),
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "rows": rows,
        "oracle": oracle,
    }
    write_json(HERE / "results" / "timm_coverage.json", data)
    lines = [
        stamp("timm_coverage", f" on {machine()}, under the load of other jobs"),
        "",
        f"Durations: analysis at 64 and 224 px {times['analysis']:.0f} s, every strategy at 64 px "
        f"{times['strategies']:.0f} s"
        + (f", gradient oracle {times['oracle']:.0f} s" if args.oracle else "")
        + ".",
        "Strategies: trunc(ate), remov(e-stem-downsampling), reorg(anize-stages), decom(pose-kernels), "
        "scale(-width, factor 0.5), skip(-irrelevant-layers, without data); R rewritten and verified, N no-op, "
        "X refused with the reason.",
        "",
        "| family | model | 64 px | 224 px | strategies at 64 px |",
        "|---|---|---|---|---|",
        *(f"| {r['family']} | {r['model']} | {r['64']} | {r['224']} | {r['strategies']} |" for r in rows),
    ]
    if oracle:
        agree = sum(o["analyzer"] == o["gradient"] for o in oracle.values())
        lines += [
            "",
            f"Gradient oracle: {agree} of {len(oracle)} pure CNNs agree exactly at the final conv.",
            "",
            "| model | final conv | analyzer | gradient |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {o['layer']} | {o['analyzer']} | {o['gradient']} |" for n, o in oracle.items()]
    write_section(
        "timm_coverage",
        "timm families analyzed, rewritten, and checked by the gradient oracle",
        "\n".join(lines),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
