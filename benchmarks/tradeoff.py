"""The CPU-sized trade-off study that ships with the project: accuracy against FLOPs, params and latency.

Four models (cifar_vgg11, cifar_vgg16, resnet18, mpnet18) x four recipes (baseline, truncate,
remove-stem-downsampling, reorganize-stages) x 2 seeds, trained from scratch at 32 px on two data sources
that need no download: ``digits`` (scikit-learn's scanned handwritten digits, upsampled) and ``synthetic``
(generated shapes). The budget is sized to finish in under 30 minutes on a 2-core CPU: 640 training images,
2 epochs, batch 32, SGD lr 0.02 (the paper's 0.1 diverges with this few steps). That is far from converged
training: read the accuracies as "after the same short budget", not as the architectures' best.

Usage:
    python benchmarks/tradeoff.py [--epochs 2] [--images 640] [--seeds 2]

Each study lives in ``benchmarks/results/tradeoff/<data>/`` (resumable: run it again after a stop); the
summaries and Pareto plots are linked from the README section this script writes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

from _common import HERE, machine, stamp, write_section

from rewriter._files import write_json
from rewriter.lab.study import Study, StudySetup, fill_latency, parse_variant, run_study, write_results
from rewriter.render import plot_pareto

READING = (
    "How to read it: the budget is far from convergence, so accuracies compare the variants after the same short "
    "training, not at their best. A deep plain network (VGG, MPNet) may stay near chance (10 classes: 10 %) in it "
    "while its truncated, shallower version learns: that says the cut model is easier to train on little data, "
    "not that it would end higher after a full schedule. Latency is CPU wall time, each model timed alone."
)
MODELS = ["cifar_vgg11", "cifar_vgg16", "resnet18", "mpnet18"]
RECIPES = ["baseline", "truncate", "remove-stem-downsampling", "reorganize-stages"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["digits", "synthetic"])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, default=640, help="training images per data source")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--fresh", action="store_true", help="delete earlier results first")
    parser.add_argument(
        "--retime", action="store_true", help="time every cell's latency again, one by one (after a busy run)"
    )
    args = parser.parse_args()
    variants = [parse_variant(r) for r in RECIPES]
    parts = [stamp("tradeoff", f" on {machine()}"), "", READING, ""]
    total = 0.0
    for source in args.data:
        out = HERE / "results" / "tradeoff" / source
        if args.fresh and out.exists():
            shutil.rmtree(out)
        setup = StudySetup(
            data=f"{source}:{args.images}", input_size=(32, 32), epochs=args.epochs, lr=args.lr, batch_size=32
        )
        study = Study(args.models, variants, list(range(args.seeds)), setup, out, retry_failed=True)
        pending, began = len(study.pending()), time.perf_counter()
        run_study(study, plot=plot_pareto)
        if args.retime:
            fill_latency(study, print, again=True)
            write_results(study, study.rows(), plot=plot_pareto)
        timing = out / "timing.json"  # wall time summed over the runs that trained cells (a study resumes)
        spent = json.loads(timing.read_text()) if timing.exists() else {"cells_run": 0, "minutes": 0.0}
        if pending:
            spent = {"cells_run": spent["cells_run"] + pending,
                     "minutes": spent["minutes"] + (time.perf_counter() - began) / 60}  # fmt: skip
            write_json(timing, spent)
        minutes = spent["minutes"]
        total += minutes
        summary = (out / "summary.md").read_text().replace("# Study summary", f"### `{source}`")
        parts += [summary, f"Wall time {minutes:.1f} min. Plot: `results/tradeoff/{source}/pareto.png`.", ""]
    parts.append(f"Both studies: {total:.1f} min.")
    body = "\n".join(parts)
    print(body)
    write_section("tradeoff", "the shipped accuracy/cost study (digits and synthetic, 32 px)", body)


if __name__ == "__main__":
    main()
