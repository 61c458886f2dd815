"""The CIFAR-10 trade-off study that ships with the project: does rewriting make resnet18 cheaper without losing
accuracy on real images, and better than pruning its channels to the same FLOPs?

torchvision's resnet18 (ImageNet stem) at 32 px with 10 classes, paper 000's CIFAR-10 setting, and:
- ``baseline``; ``truncate`` (paper 000 Fig. 11: the unproductive tail cut at the border layer);
- ``resnet18-32-cost-first``: what ``rewriter optimize resnet18 --input-size 32 --num-classes 10`` chooses by
  default (no unproductive layer, then the fewest FLOPs); ``resnet18-32-fit-first``: its ``--prefer fit``
  choice (the receptive field closest to the image, at any cost);
- the peer, ``benchmarks.peers:resnet18_pruned``: Torch-Pruning's magnitude channel pruning of resnet18 to the
  cost-first choice's FLOPs, trained from scratch with the same setup (a fair comparison of architectures).

One setup for every cell, recorded in study.json: a stratified sample of the training split (every class in
proportion, seed 0; the CPU budget does not fit all 50,000 for every cell), the whole test split, SGD with
paper 000's rate and momentum, a warm-up epoch, the rate divided by 10 at each third, random crops and flips.
Cells run seed by seed (every recipe gets seed 0 before any gets seed 1), so a stopped run has every recipe.
Resumable: run it again after a stop. The data come from ``../shared/data/cifar10-jpeg.tar.gz``, unpacked
once into ``$REWRITER_CACHE`` (default ``~/.cache/rewriter``).

Usage:
    python benchmarks/cifar10_study.py                       # the shipped study (about 2 h on 2 idle cores)
    python benchmarks/cifar10_study.py --slice --out /tmp/c  # a check of the command (a few minutes)
    python benchmarks/cifar10_study.py --retime              # time every cell again, one by one, at the end
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _common import HERE, machine, stamp, unpacked_cifar10, write_section

from rewriter.lab.study import Study, StudySetup, fill_latency, parse_variant, run_study, write_results
from rewriter.render import plot_curves, plot_pareto

RECIPES = ["baseline", "truncate", "examples/recipes/resnet18-32-cost-first.yaml",
           "examples/recipes/resnet18-32-fit-first.yaml"]  # fmt: skip
MODEL = "resnet18"
PEER = "benchmarks.peers:resnet18_pruned"
SEEDS = 3
READING = (
    "How to read it: every cell is trained from scratch with one setup (below); the accuracy is on the whole "
    "CIFAR-10 test split (10,000 images), mean ± sample standard deviation over seeds 0-2; `converged` applies "
    "the study's rule to the test accuracy scored every third epoch. FLOPs per image at 32 px (fvcore's "
    "convention). The limits: a stratified fifth of the training split (10,000 of 50,000 images), 12 epochs, "
    "and the JPEG-re-encoded copy of CIFAR-10, so every accuracy sits well below the paper's; the differences "
    "between recipes are what this study measures, within their spread."
)
PAPER_CONDITIONS = (
    "Paper 000 trains 60 epochs on all 50,000 training images (the original data) with SGD 0.1, momentum 0.9, "
    "no weight decay stated, the rate /10 every 20 epochs, batch 64, random crops and flips. Ours: 12 epochs on "
    "a stratified 10,000, SGD 0.1, momentum 0.9, weight decay 5e-4, one warm-up epoch, the rate /10 at each "
    "third, batch 128, the same augmentation, JPEG quality 75, fp32 (chosen before the speed runs; bf16 + "
    "channels_last measured 1.1x-1.5x faster for resnet18 in benchmarks/train_speed.py, so a rerun in bf16 "
    "would take less time). With about 1/50 of the paper's optimisation steps the deep baseline underfits (its "
    "training loss stays near 1.5 where the truncated networks reach 1.0: curves.png), which favours the "
    "shallower networks: read the direction, not the size."
)
PEER_NOTE = (
    "Both are trained from scratch with the same setup: the fair comparison of two architectures of one cost "
    "(pruning a trained network and fine-tuning it is Torch-Pruning's usual workflow, and another question). "
    "Cutting depth keeps 64 channels at full resolution and no layer after layer1; pruning keeps all 18 layers "
    "at 35-280 channels."
)
LIMITS = (
    "What it does not show: the paper's absolute accuracies (a fifth of the data and of the epochs, JPEG "
    "copies); whether the ordering holds with the full budget (the GPU script runs it at full size); pruning "
    "a trained network and fine-tuning it; other families (cifar_vgg11 did not fit the CPU budget); latency "
    "beyond one CPU thread at batch 1 and 32."
)
SETUP = dict(input_size=(32, 32), epochs=12, lr=0.1, batch_size=128, momentum=0.9, weight_decay=5e-4,
             warmup_epochs=1, precision="fp32", train_samples=10_000, test_every=3)  # fmt: skip


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="an unpacked CIFAR-10 folder (default: the shared copy)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "tradeoff" / "cifar10")
    parser.add_argument("--seeds", type=int, default=SEEDS)
    parser.add_argument("--workers", type=int, default=1, help="cells in parallel (one torch thread each)")
    parser.add_argument("--slice", action="store_true", help="500 training images, 2 epochs, 1 seed")
    parser.add_argument("--retime", action="store_true", help="only time every finished cell again")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    os.chdir(HERE.parent)  # recipe paths and the peer's import spec are relative to the project
    sys.path.insert(0, str(HERE.parent))
    setup = dict(SETUP)
    if args.slice:
        setup.update(epochs=2, train_samples=500, test_samples=500, test_every=1)
        args.seeds = 1
    cache = Path(os.environ.get("REWRITER_CACHE") or Path.home() / ".cache" / "rewriter") / "cifar10-jpeg"
    data = f"imagefolder:{args.data or unpacked_cifar10(cache)}"
    study_setup = StudySetup(data=data, **setup)
    began = time.perf_counter()
    for seed in range(0 if args.retime else args.seeds):  # seed by seed: a stopped run has every recipe
        for models, recipes in (([MODEL], RECIPES), ([PEER], ["baseline"])):
            study = Study(models, [parse_variant(r) for r in recipes], [seed], study_setup, args.out,
                          retry_failed=True)  # fmt: skip
            if study.pending():
                print(f"seed {seed}: {len(study.pending())} cells of {models[0]}", flush=True)
                run_study(study, workers=args.workers, plot=plot_pareto, curves=plot_curves)
    # the whole grid, for timing and tables: cells it names that were never run (the peer's rewrites) are skipped
    whole = Study([MODEL, PEER], [parse_variant(r) for r in RECIPES], list(range(args.seeds)), study_setup,
                  args.out)  # fmt: skip
    if args.retime:
        fill_latency(whole, print, again=True)
    write_results(whole, whole.rows(), plot=plot_pareto, curves=plot_curves)
    minutes = (time.perf_counter() - began) / 60
    print(f"{stamp('cifar10_study', f' on {machine()}')} {minutes:.1f} min this run.")
    if not args.slice:
        write_section("cifar10_study", "the CIFAR-10 trade-off study, against paper 000 and channel pruning",
                      report(whole, args.out))  # fmt: skip


def _stats(rows) -> dict[str, tuple[float, float, int, int]]:
    """Per recipe label (the peer as ``peer``): test accuracy mean and sample standard deviation in %, seeds,
    converged seeds."""
    groups: dict[str, list] = {}
    for row in rows:
        if row.ok and row.test_accuracy is not None:
            groups.setdefault("peer" if row.model == PEER else row.recipe, []).append(row)
    return {
        label: (100 * statistics.mean(r.test_accuracy for r in group),
                100 * statistics.stdev(r.test_accuracy for r in group) if len(group) > 1 else 0.0,
                len(group), sum(r.convergence == "converged" for r in group))
        for label, group in groups.items()
    }  # fmt: skip


def report(study: Study, out: Path) -> str:
    """The README section: how to read the study, its summary, the comparison with paper 000 and the peer."""
    stats = _stats(study.rows())

    def ours(label: str) -> str:
        if label not in stats:
            return "not run"
        mean, sd, n, done = stats[label]
        return f"{mean:.2f} ± {sd:.2f} % ({n} seeds, {done} converged)"

    def direction(label: str) -> str:
        if label not in stats or "baseline" not in stats or not _all_converged(stats, label, "baseline"):
            return "- (not every seed converged)" if label in stats and "baseline" in stats else "-"
        return "yes" if stats[label][0] > stats["baseline"][0] else "no"

    summary = (out / "summary.md").read_text().replace("# Study summary", "### Summary")
    return "\n".join([
        READING, "", summary, "", "### Against paper 000 (CIFAR-10, 32 px)", "", PAPER_CONDITIONS, "",
        "| setting | paper 000 | ours | the effect's direction reproduces? |", "|---|---|---|---|",
        f"| resnet18, ImageNet stem (baseline) | 84.61 % | {ours('baseline')} | (reference) |",
        f"| resnet18 truncated at the border layer | above the baseline in every scenario (Fig. 11, 10 runs; "
        f"numbers only in the figure) | {ours('truncate')} | {direction('truncate')} |",
        "| resnet18 without the stem's two downsamplings (0.04 -> 0.56 GFLOPs) | 91.95 % | not run on the CPU: "
        "`benchmarks/gpu/run.py` runs it where a GPU is lent | - |",
        "| resnet34, ImageNet stem -> without the stem's downsamplings | 82.76 % -> 92.21 % | not run on the "
        "CPU (the GPU script) | - |",
        "", "### Against channel pruning at the same FLOPs", "",
        f"The optimizer's cost-first choice (truncate after layer1, 11.92 M FLOPs): "
        f"{ours('resnet18-32-cost-first')}; Torch-Pruning's magnitude pruning of every layer's channels to "
        f"11.72 M FLOPs: {ours('peer')}. The fit-first choice (49.23 M FLOPs): {ours('resnet18-32-fit-first')}. "
        + PEER_NOTE, "", verdict(stats, "resnet18-32-cost-first", "peer"), "", LIMITS,
    ])  # fmt: skip


def _all_converged(stats, *labels: str) -> bool:
    return all(stats[label][3] == stats[label][2] for label in labels)


def verdict(stats, ours: str, peer: str) -> str:
    """Which of two recipes of about the same FLOPs is more accurate, and by how many standard errors of the
    difference of their means (Welch's; "within noise" under 2)."""
    if ours not in stats or peer not in stats:
        return "Verdict: not yet (a recipe has no finished cell)."
    if not _all_converged(stats, ours, peer):
        return "Verdict: none (a seed did not converge; a run that did not learn is not compared)."
    (m1, s1, n1, _), (m2, s2, n2, _) = stats[ours], stats[peer]
    error = (s1**2 / n1 + s2**2 / n2) ** 0.5
    ratio = abs(m1 - m2) / error if error else float("inf")
    if ratio < 2:
        return f"Verdict: at the same FLOPs, cutting depth and pruning channels score within noise ({m1 - m2:+.2f} pp)."
    word = "beats" if m1 > m2 else "loses to"
    return (f"Verdict: at the same FLOPs, cutting the unproductive depth {word} pruning channels by "
            f"{m1 - m2:+.2f} pp ({ratio:.1f} standard errors of the difference; {n1} and {n2} seeds).")  # fmt: skip


if __name__ == "__main__":
    main()
