"""Resource bombs in model files (issue 14.12): how much memory and time ``rewriter.load`` spends refusing
them, against a plain ``torch.load(weights_only=True)`` of the same file.

The files: a model file of a tiny built-in model whose state dict carries a 1 GiB tensor, recompressed
with deflate (a 1 MB file); the same file with ``input_size`` 100000 x 100000 (the analysis at that size
would allocate about 120 GB); and one with ``in_channels`` 10**6. Each load runs in a fresh process;
its peak resident memory (``VmHWM``) is reported next to that of a process that only imports torch
and rewriter, and the time of the load alone (the imports are done before the clock starts).

Usage:
    python benchmarks/model_file_bombs.py

Writes the results section of ``benchmarks/README.md`` and ``benchmarks/results/model_file_bombs.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from _common import HERE, machine, stamp, write_section

import rewriter
from rewriter._files import write_json
from rewriter.engine.recipe import Recipe

PROBE = """
import json, sys, time
import torch, rewriter, rewriter.engine
start = time.perf_counter()
outcome = "loaded"
try:
    if sys.argv[1] == "torch.load":
        torch.load(sys.argv[2], weights_only=True)
    elif sys.argv[1] == "rewriter.load":
        rewriter.load(sys.argv[2])
except Exception as err:
    outcome = f"{type(err).__name__}: {str(err)[:150]}"
seconds = time.perf_counter() - start
status = open("/proc/self/status").read().splitlines()
peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
print(json.dumps({"s": seconds, "rss_mb": peak, "outcome": outcome}))
"""


def payload() -> dict:
    model, spec = rewriter.load_model("relevance_cnn", model_args={"width": 4, "input_size": 8})
    return {
        "format": "rewriter-model", "version": 1, "base": spec.to_json(), "recipe": Recipe.empty((8, 8)).to_dict(),
        "input_size": [8, 8], "in_channels": 3, "state_dict": model.state_dict(),
    }  # fmt: skip


def make_files(folder: Path) -> dict[str, Path]:
    files = {}
    data = payload()
    data["state_dict"] = {**data["state_dict"], "classifier.weight": torch.empty(1 << 28)}  # 1 GiB, untouched
    torch.save(data, folder / "plain.pt")
    with (
        zipfile.ZipFile(folder / "plain.pt") as src,
        zipfile.ZipFile(folder / "gib.pt", "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    (folder / "plain.pt").unlink()
    files["1 GiB tensor, deflated"] = folder / "gib.pt"
    for field, value, name in (
        ("input_size", [100_000, 100_000], "size"),
        ("in_channels", 10**6, "channels"),
    ):
        data = payload()
        data[field] = value
        torch.save(data, folder / f"{name}.pt")
        files[f"{field} {value}"] = folder / f"{name}.pt"
    return files


def measure(how: str, path: Path | None) -> dict:
    args = [sys.executable, "-c", PROBE, how, str(path or "")]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        files = make_files(Path(folder))
        baseline = measure("import", None)
        rows = []
        for label, path in files.items():
            for how in ("torch.load", "rewriter.load"):
                result = measure(how, path)
                rows.append({"file": label, "bytes": path.stat().st_size, "how": how, **result})
                print(rows[-1], flush=True)
    write_json(
        HERE / "results" / "model_file_bombs.json",
        {"machine": machine(), "import_only": baseline, "rows": rows},
    )
    lines = ["| file | size | load | peak RSS | time | outcome |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['bytes'] / 1e6:.1f} MB | `{r['how']}` | {r['rss_mb']:.0f} MB | "
                     f"{r['s']:.2f} s | {r['outcome'][:90]} |")  # fmt: skip
    body = (
        f"{stamp('model_file_bombs')} {machine()}; measured under load. A process that only imports torch and "
        f"rewriter peaks at {baseline['rss_mb']:.0f} MB.\n\n" + "\n".join(lines)
    )
    print(write_section("model_file_bombs", "resource bombs in model files", body))


if __name__ == "__main__":
    main()
