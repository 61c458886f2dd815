"""``rewriter.analyze`` (receptive fields, border layers, FLOPs) against the paper author's rfa-toolbox.

In one process, on the same model objects at 224 px: the median time of ``rewriter.analyze(model, 224)``
(FLOPs included, counted on the meta device) and of rfa-toolbox's ``create_graph_from_pytorch_model``
(receptive fields only, from a ``torch.jit.trace``), each after one warm-up run, and their ratio. For
scale, ``rewriter.analyze(..., flops_backend="fvcore")`` is timed too. Target: rewriter at least 20x
faster on every model.

rfa-toolbox is not a dependency of rewriter. Install it into the environment that runs this script with

    pip install --no-deps --ignore-requires-python rfa-toolbox graphviz attrs

rfa-toolbox 1.7 imports ``Sequence`` from ``collections``, which Python 3.10 removed; ``_import_rfa``
below gives ``collections`` that alias for the duration of the import only (nothing is patched on disk).

Usage:
    python benchmarks/analyze_vs_rfa.py                # 5 models, 224 px, 5 repeats
    python benchmarks/analyze_vs_rfa.py --repeats 3 --no-write

Writes ``benchmarks/results/analyze_vs_rfa.json`` and its section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import contextlib
import os
import statistics
import time
import warnings

import torch
from _common import machine, median_time, publish, stamp

import rewriter
from rewriter.models.sources import load_model

MODELS = ("resnet18", "vgg16", "mobilenet_v2", "efficientnet_b0", "densenet121")
_ABC_NAMES = ("Sequence", "Iterable", "Mapping", "MutableMapping", "Callable")


@contextlib.contextmanager
def _collections_aliases():
    """``collections.Sequence`` and friends, as before Python 3.10, while the block runs."""
    added = [name for name in _ABC_NAMES if not hasattr(collections, name)]
    for name in added:
        setattr(collections, name, getattr(collections.abc, name))
    try:
        yield
    finally:
        for name in added:
            delattr(collections, name)


def _import_rfa():
    """rfa-toolbox's ``create_graph_from_pytorch_model``, or a one-line reason it cannot be imported."""
    try:
        with _collections_aliases(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import rfa_toolbox
    except ImportError as err:
        raise SystemExit(
            f"rfa-toolbox is not importable ({err}): pip install --no-deps --ignore-requires-python "
            "rfa-toolbox graphviz attrs"
        ) from err
    return rfa_toolbox.create_graph_from_pytorch_model


def _rfa(create, model, size: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # jit tracer warnings
        create(model, input_res=(1, 3, size, size))


def cpu_time(fn, *args, repeats: int, **kwargs) -> float:
    """Median CPU seconds of this process (all its threads) per call: less sensitive to other load on a
    shared machine than wall time."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(*args, **kwargs)
        times.append(time.process_time() - start)
    return statistics.median(times)


def run(models: list[str], size: int, repeats: int) -> list[dict]:
    create = _import_rfa()
    rows = []
    for name in models:
        model, _ = load_model(name)
        model.eval()
        start = time.perf_counter()
        _rfa(create, model, size)
        rfa_cold = time.perf_counter() - start
        rewriter.analyze(model, size)  # warm-up
        ours = median_time(rewriter.analyze, model, size, repeats=repeats)
        ours_fvcore = median_time(rewriter.analyze, model, size, flops_backend="fvcore", repeats=repeats)
        rfa = median_time(_rfa, create, model, size, repeats=repeats)
        ours_cpu = cpu_time(rewriter.analyze, model, size, repeats=repeats)
        rfa_cpu = cpu_time(_rfa, create, model, size, repeats=repeats)
        rows.append(
            {"model": name, "size": size, "rewriter_s": ours, "rewriter_fvcore_s": ours_fvcore, "rfa_s": rfa,
             "rfa_cold_s": rfa_cold, "speedup": rfa / ours, "rewriter_cpu_s": ours_cpu, "rfa_cpu_s": rfa_cpu,
             "speedup_cpu": rfa_cpu / ours_cpu}
        )  # fmt: skip
        print(f"{name}: rewriter {ours:.3f} s, rfa-toolbox {rfa:.3f} s, {rfa / ours:.1f}x; CPU time "
              f"{ours_cpu:.3f} s / {rfa_cpu:.3f} s, {rfa_cpu / ours_cpu:.1f}x", flush=True)  # fmt: skip
    return rows


def markdown(rows: list[dict], repeats: int, load: tuple[float, float, float]) -> str:
    lines = [
        stamp("analyze_vs_rfa", f" on {machine()}; median of {repeats} runs after a warm-up, in one process; "
              f"load average before the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"),
        "",
        "| model | rewriter.analyze, FLOPs on meta (s) | with fvcore FLOPs (s) | rfa-toolbox (s) | rfa-toolbox, "
        "first call (s) | rfa-toolbox / rewriter |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['rewriter_s']:.3f} | {r['rewriter_fvcore_s']:.3f} | {r['rfa_s']:.3f} | "
            f"{r['rfa_cold_s']:.3f} | {r['speedup']:.1f}x |"
        )
    worst = min(rows, key=lambda r: r["speedup"])
    lines += [
        "",
        f"Smallest ratio: {worst['speedup']:.1f}x ({worst['model']}); target: at least 20x on each.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not update the README")
    args = parser.parse_args()
    load = os.getloadavg()
    rows = run(args.models, args.size, args.repeats)
    section = markdown(rows, args.repeats, load)
    print(section)
    if not args.no_write:
        publish(
            "analyze_vs_rfa", "rewriter.analyze against rfa-toolbox", section, {"load": load, "rows": rows}
        )


if __name__ == "__main__":
    main()
