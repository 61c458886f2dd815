"""FLOPs counted on the meta device against fvcore, on every torchvision classifier at 32 and 224 px.

For each model and size that fvcore can count: the meta count (``TracedModel.analyze``, the shape pass)
and fvcore's (``FlopCountAnalysis``: a jit trace and a real forward pass), their totals and, where they
differ, the per-operator breakdown of both. Also the time of each (median of ``--repeats``): for the meta
count, the whole analysis (shape pass, receptive fields, border layers, FLOPs); for fvcore, its count.

Usage:
    python benchmarks/flops_vs_fvcore.py                  # all 80 models, 32 and 224 px
    python benchmarks/flops_vs_fvcore.py --models 'vit*' --repeats 1 --no-write

Writes ``benchmarks/results/flops_vs_fvcore.json`` and its section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import fnmatch
import os
import statistics
import time

from _common import machine, median_time, publish, stamp, zoo_parser
from tqdm import tqdm

import rewriter
from rewriter.analysis.flops_fvcore import count_flops
from rewriter.models.sources import load_model, torchvision_models


def compare(model, traced: rewriter.TracedModel, size: int, repeats: int) -> dict:
    try:
        meta = traced.analyze(size)
    except rewriter.RewriterError as err:  # the model does not run at this size: fvcore cannot count it
        return {"error": str(err)}
    times, fvcore = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            fvcore = count_flops(model, (size, size))
        except Exception as err:  # fvcore's jit trace fails where the model asserts its size, ...
            return {"error": f"fvcore: {type(err).__name__}: {err}"}
        times.append(time.perf_counter() - start)
    row = {
        "meta": meta.flops,
        "fvcore": fvcore.flops,
        "equal": meta.flops == fvcore.flops,
        "meta_s": median_time(traced.analyze, size, repeats=repeats),
        "fvcore_s": statistics.median(times),
    }
    if not row["equal"]:
        row["meta_by_operator"] = dict(meta.flops_by_operator)
        row["fvcore_by_operator"] = dict(fvcore.by_operator)
    return row


def run(models: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in tqdm(models, desc="models", unit="model"):
        model, _ = load_model(name)
        traced = rewriter.trace_model(model)
        for size in sizes:
            rows.append({"model": name, "size": size, **compare(model, traced, size, repeats)})
    return rows


def markdown(rows: list[dict], repeats: int, load: tuple[float, ...]) -> str:
    counted = [r for r in rows if "error" not in r]
    equal = [r for r in counted if r["equal"]]
    skipped = ", ".join(f"{r['model']} at {r['size']}" for r in rows if "error" in r) or "none"
    lines = [
        stamp("flops_vs_fvcore", f" on {machine()}; times: median of {repeats} runs; load average before the "
              f"run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"),
        "",
        f"**{len(equal)} of {len(counted)}** model-size pairs fvcore can count have exactly fvcore's total. "
        f"fvcore cannot run: {skipped} (the models do not run at that size).",
        "",
        f"Time for all of them: the whole analysis with the meta count {sum(r['meta_s'] for r in counted):.1f} s, "
        f"fvcore's count alone {sum(r['fvcore_s'] for r in counted):.1f} s.",
    ]  # fmt: skip
    different = [r for r in counted if not r["equal"]]
    if different:
        lines += ["", "| model | size | meta | fvcore | operators that differ (meta / fvcore) |"]
        lines.append("|---|---|---|---|---|")
        for r in different:
            ops = sorted(set(r["meta_by_operator"]) | set(r["fvcore_by_operator"]))
            diff = ", ".join(
                f"{op} {r['meta_by_operator'].get(op, 0)} / {r['fvcore_by_operator'].get(op, 0)}"
                for op in ops
                if r["meta_by_operator"].get(op, 0) != r["fvcore_by_operator"].get(op, 0)
            )
            lines.append(f"| {r['model']} | {r['size']} | {r['meta']} | {r['fvcore']} | {diff} |")
    lines += [
        "",
        "| model | size | FLOPs | analysis with meta FLOPs (s) | fvcore (s) |",
        "|---|---|---|---|---|",
    ]
    for r in counted:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['meta']} | {r['meta_s']:.3f} | {r['fvcore_s']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = zoo_parser(__doc__, repeats=1).parse_args()
    models = [m for m in torchvision_models() if fnmatch.fnmatchcase(m, args.models)]
    load = os.getloadavg()
    rows = run(models, args.sizes, args.repeats)
    section = markdown(rows, args.repeats, load)
    print(section)
    if not args.no_write:
        publish(
            "flops_vs_fvcore",
            "FLOPs on the meta device against fvcore",
            section,
            {"load": load, "rows": rows},
        )


if __name__ == "__main__":
    main()
