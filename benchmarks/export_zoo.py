"""ONNX and torch.export (pt2) exports of every built-in model, checked against PyTorch and timed.

For each model of the built-in zoo at 32 px (10 classes): ``rewriter.engine.export`` writes a pt2 archive
and an ONNX model with a dynamic batch dimension, loads each back in its runtime (``torch.export.load``;
``onnx.checker`` and onnxruntime), and compares it with the PyTorch model on random inputs at batch 1 and
3. Both runtimes use the same number of intra-op threads (``--threads``, default 1). The table gives the
exporter that worked, the largest absolute difference, and the batch-1 latency of
PyTorch, the pt2 program and onnxruntime (median ± half the interquartile range; ``noisy`` when the spread
exceeds 10 %). A routed model (skip-irrelevant-layers) is refused with the reason; the last row shows what
the TorchScript exporter would have written for it: the static backbone, which computes something else.

Usage:
    python benchmarks/export_zoo.py                      # every built-in model
    python benchmarks/export_zoo.py --models cifar_vgg11 mpnet18

Writes the results section of ``benchmarks/README.md`` and ``benchmarks/results/export_zoo.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import HERE, machine, stamp, write_section

import rewriter
from rewriter._files import write_json
from rewriter.engine import export, time_model
from rewriter.models import zoo


def export_one(name: str, folder: Path) -> dict:
    model, _ = rewriter.load_model(name)
    model.eval()
    entry = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    entry["pytorch"] = time_model(model, (32, 32)).to_json()
    for fmt in ("pt2", "onnx"):
        start = time.perf_counter()
        try:
            report = export(model, folder / f"{name}.{fmt}", fmt, input_size=(32, 32))
        except rewriter.RewriterError as err:
            entry[fmt] = {"error": str(err)}
            continue
        entry[fmt] = {**report.to_json(), "export_s": round(time.perf_counter() - start, 2),
                      "bytes": report.path.stat().st_size}  # fmt: skip
    return entry


def routed(folder: Path) -> dict:
    """relevance_cnn with its two same-width convs gated, routed by an untrained router (no training:
    only whether and how it exports is measured)."""
    from rewriter.analysis import analyze
    from rewriter.lab import RoutedModel, Router, gate_units, label_units

    model, _ = rewriter.load_model("relevance_cnn")
    units = label_units(model, analyze(model, 32, flops=False))
    backbone, routes = gate_units(model, units)
    net = RoutedModel(Router(len(units)), backbone, routes, [u.name for u in units]).eval()
    entry: dict = {"model": "relevance_cnn routed (skip-irrelevant-layers)"}
    try:
        export(net, folder / "routed.onnx", "onnx", input_size=(32, 32))
    except rewriter.RewriterError as err:
        entry["refused"] = str(err)
    x = torch.randn(8, 3, 32, 32)
    route = torch.arange(8) % len(units)  # images routed to every depth
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(folder / "legacy.onnx"), dynamo=False, dynamic_axes={"x": {0: "b"}},
                          input_names=["x"])  # fmt: skip
        import onnxruntime

        session = onnxruntime.InferenceSession(
            str(folder / "legacy.onnx"), providers=["CPUExecutionProvider"]
        )
        static = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        entry["legacy_max_abs_diff_vs_routed"] = float((static - net(x, route)).abs().max())
    return entry


def table(entries: list[dict]) -> str:
    lines = [
        "| model | params | pt2 | max abs diff | onnx exporter | max abs diff | PyTorch | pt2 | onnxruntime |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for e in entries:
        if "pytorch" not in e:
            continue
        cells = [e["model"], f"{e['params'] / 1e6:.2f} M"]
        for fmt in ("pt2", "onnx"):
            got = e[fmt]
            if "error" in got:
                cells += ["refused", got["error"][:80]]
            else:
                worst = max(c["max_abs_diff"] for c in got["checks"])
                cells += [got["exporter"] if fmt == "onnx" else "ok", f"{worst:.1e}"]
        times = [e["pytorch"]] + [e[f].get("latency") for f in ("pt2", "onnx")]
        cells += [_ms(t) for t in times]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(t: dict | None) -> str:
    if not t:
        return "-"
    return f"{t['median_ms']:.2f} ±{t['iqr_ms'] / 2:.2f}" + (" noisy" if t["noisy"] else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=zoo.list_models())
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads of torch and onnxruntime (default 1: on a shared "
        "machine more threads than free cores make every timing meaningless)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        entries = []
        for name in args.models:
            print(f"exporting {name}", flush=True)
            entries.append(export_one(name, Path(folder)))
        extra = routed(Path(folder))
    write_json(
        HERE / "results" / "export_zoo.json", {"machine": machine(), "models": entries, "routed": extra}
    )
    body = (
        f"{stamp('export_zoo')} {machine()}. Measured under load from other processes: latencies are "
        "indicative (ms at batch 1, median ± half the IQR), the differences are exact.\n\n"
        + table(entries)
        + f"\n\nRouted model: {extra.get('refused', 'exported')}. The TorchScript exporter would write the "
        f"static backbone, which differs from the routed model by up to {extra['legacy_max_abs_diff_vs_routed']:.3g} "
        "on images routed to every depth."
    )
    print(write_section("export_zoo", "ONNX and pt2 exports of the built-in models", body))


if __name__ == "__main__":
    main()
