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
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

import rewriter
from rewriter.io import atomic_path, write_json
from rewriter.metrics import count_flops
from rewriter.sources import load_model, torchvision_models

HERE = Path(__file__).parent
BEGIN, END = "<!-- analyze_zoo:begin -->", "<!-- analyze_zoo:end -->"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, rewriter {rewriter.__version__}"
    )


def median_time(fn, *args, repeats: int, **kwargs) -> tuple[float, str | None]:
    """Median wall time of ``fn(*args, **kwargs)`` over ``repeats`` runs, and the error it raised, if any."""
    times, error = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            fn(*args, **kwargs)
        except rewriter.RewriterError as err:
            error = str(err)
        times.append(time.perf_counter() - start)
    return statistics.median(times), error


def run(models: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for name in tqdm(models, desc="models", unit="model"):
        model, _ = load_model(name)
        for size in sizes:
            analysis_s, error = median_time(rewriter.analyze, model, size, flops=False, repeats=repeats)
            flops_s = 0.0 if error else median_time(count_flops, model, (size, size), repeats=repeats)[0]
            rows.append(
                {"model": name, "size": size, "analysis_s": analysis_s, "flops_s": flops_s, "error": error}
            )
    return rows


def markdown(rows: list[dict], sizes: list[int], repeats: int) -> str:
    lines = [BEGIN, "", f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; median of {repeats} runs.", ""]
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
    lines += ["", END]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    path = HERE / "README.md"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    with atomic_path(path) as tmp:
        tmp.write_text(head + section + tail)


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
        write_readme(section)
    print(
        json.dumps(
            {"analysis_s": sum(r["analysis_s"] for r in rows), "flops_s": sum(r["flops_s"] for r in rows)}
        )
    )


if __name__ == "__main__":
    main()
