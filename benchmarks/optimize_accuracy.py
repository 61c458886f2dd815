"""The accuracy-aware search of ``rewriter optimize`` for resnet18 at 32 px, on digits and on CIFAR-10.

For each data set the training-free search runs (default space, objective FLOPs, no budget), then the
accuracy-aware search trains the baseline, the front and the best of the training-free ranking by
successive halving (Optuna's ``SuccessiveHalvingPruner``) on a validation split held out from the training
data, and picks the cheapest candidate within ``--max-drop`` percentage points of the baseline's validation
accuracy. The table records what it chose, its test accuracy against the baseline's, the epochs spent
against training every candidate to the end, and Kendall's tau between the training-free and the trained
ranking. CIFAR-10 is a stratified subset (``--cifar-train`` / ``--cifar-test`` images, equal per class, seeded)
of ``../shared/data/cifar10-jpeg.tar.gz`` (JPEG re-encoded: accuracies compare with published CIFAR-10
figures only roughly), unpacked once into ``--work``.

Usage:
    python benchmarks/optimize_accuracy.py                                   # digits and the CIFAR-10 subset
    python benchmarks/optimize_accuracy.py --data digits --epochs 2 --max-batches 2      # a smoke run

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/optimize_accuracy.json`` (only with
``--write``: a smoke run writes nothing).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import CIFAR10_ARCHIVE, HERE, machine, stamp, unpacked_cifar10, write_section

import rewriter
from rewriter._files import write_json
from rewriter._text import human
from rewriter.lab.model_request import ModelRequest
from rewriter.lab.sampling import stratified_indices
from rewriter.lab.study import Executor
from rewriter.lab.training import TrainConfig
from rewriter.optimize.accuracy import Schedule, search_accuracy
from rewriter.optimize.trials import TrialSetup


def cifar_subset(archive: Path, work: Path, train: int, test: int, seed: int) -> str:
    """An image folder of ``train`` and ``test`` images drawn stratified from the archive's splits (links to
    the unpacked files); its ``imagefolder:`` spec."""
    unpacked = unpacked_cifar10(work / "cifar10-jpeg", archive)
    subset = work / f"cifar10-{train}-{test}-seed{seed}"
    if not subset.is_dir():
        for split, count in (("train", train), ("test", test)):
            files = sorted((unpacked / split).glob("*/*.jpg"))
            labels = [f.parent.name for f in files]
            classes = sorted(set(labels))
            for i in stratified_indices([classes.index(name) for name in labels], count, seed=seed):
                target = subset / split / files[i].parent.name / files[i].name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(files[i])
    return f"imagefolder:{subset}"


def run(name: str, spec: str, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    result = rewriter.optimize_model("resnet18", input_size=32, num_classes=10, dry_run=True)
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, max_batches=args.max_batches
    )
    out = Path(args.work) / f"search-{name}-{args.epochs}ep"
    setup = TrialSetup(ModelRequest("resnet18"), spec, (32, 32), config, out, device=args.device)
    schedule = Schedule(max_drop=args.max_drop, factor=args.factor, seeds=args.seeds, top=args.top)
    executor = Executor(args.executor, workers=args.workers)
    search = search_accuracy(result, setup, schedule, executor=executor, say=print)
    chosen = search.entry(search.chosen) if search.chosen else None
    baseline = search.entries[0]
    return {
        "data": name, "spec": spec, "training_free_choice": result.chosen.label if result.chosen else None,
        "chosen": chosen.candidate.label if chosen else None, "reason": search.reason,
        "baseline_flops": baseline.candidate.figures.flops,
        "chosen_flops": chosen.candidate.figures.flops if chosen else None,
        "baseline_test": baseline.to_json()["test_mean"],
        "chosen_test": chosen.to_json()["test_mean"] if chosen else None,
        "epochs_spent": search.epochs_spent, "epochs_full": search.epochs_full, "kendall_tau": search.tau,
        "seconds": round(time.perf_counter() - start), "search": search.to_json(), "table": search.format(),
    }  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _line(row: dict) -> str:
    tau = "-" if row["kendall_tau"] is None else f"{row['kendall_tau']:.2f}"
    return (
        f"| {row['data']} | `{row['chosen']}` | {human(row['baseline_flops'])} -> {human(row['chosen_flops'])} | "
        f"{_pct(row['baseline_test'])} -> {_pct(row['chosen_test'])} | {row['epochs_spent']} of "
        f"{row['epochs_full']} | {tau} | {row['seconds']} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data", nargs="+", choices=("digits", "cifar10"), default=["digits", "cifar10"])
    add("--epochs", type=int, default=15)
    add("--max-drop", type=float, default=1.0, help="percentage points below the baseline (default 1)")
    add("--factor", type=int, default=3, help="reduction factor of successive halving (default 3)")
    add("--seeds", type=int, default=2)
    add("--top", type=int, default=3)
    add("--lr", type=float, default=0.05)
    add("--batch-size", type=int, default=64)
    add("--max-batches", type=int, default=None, help="batches per epoch, for a smoke run")
    add("--cifar-train", type=int, default=5000)
    add("--cifar-test", type=int, default=1000)
    add("--device", default=None, help="default: cuda if available, else cpu")
    add("--executor", choices=("serial", "processes", "ray"), default="serial")
    add("--workers", type=int, default=1)
    add("--archive", default=str(CIFAR10_ARCHIVE), help="the CIFAR-10 JPEG archive (default ../shared/data/)")
    add("--work", default="/tmp/rewriter-optimize-accuracy", help="unpacked data and the searches' folders")
    add("--write", action="store_true", help="write the README section and the results JSON")
    args = parser.parse_args()
    specs = {"digits": "digits"}
    if "cifar10" in args.data:
        specs["cifar10"] = cifar_subset(
            Path(args.archive), Path(args.work), args.cifar_train, args.cifar_test, seed=0
        )
    rows = []
    for name in args.data:
        rows.append(run(name, specs[name], args))
        print(rows[-1]["table"], "\n", _line(rows[-1]), flush=True)
    if not args.write:
        return
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    body = "\n".join([
        stamp("optimize_accuracy", f" on {machine()}; load average {load} over 1, 5, 15 min"), "",
        f"resnet18 at 32 px, 10 classes; {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}, "
        f"{args.seeds} seed(s); cheapest within {args.max_drop:g} pp of the baseline's validation accuracy "
        f"(10% of the training split held out, stratified); CIFAR-10: {args.cifar_train} training and "
        f"{args.cifar_test} test images, stratified, from the JPEG archive.", "",
        "| data | chosen | FLOPs | test accuracy (baseline -> chosen) | epochs spent of full | Kendall's tau | time |",
        "|---|---|---|---|---|---|---|", *(_line(row) for row in rows), "",
        *(f"```\n{row['table']}\n```" for row in rows),
    ])  # fmt: skip
    write_json(HERE / "results" / "optimize_accuracy.json", {"rows": rows, "machine": machine()})
    print(write_section("optimize_accuracy", "the accuracy-aware search", body))


if __name__ == "__main__":
    main()
