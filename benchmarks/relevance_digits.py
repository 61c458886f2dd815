"""Paper 004's setup end to end on scikit-learn's digits: CNN 1, the relevance labels, CNN 2 and CNN 3.

Paper 004 (MNIST, Keras): three same-size 3x3 convolutions and one dense layer, RMSprop, 20 epochs; the
router (CNN 2) reaches 62 % test accuracy, CNN 3 "close to 100 percent", CNN 1 98 %. Here: the same network
(``relevance_cnn``, 32 filters) on digits upsampled to MNIST's 28 px, the same optimizer and epochs, once
trained on the labelled images only (the paper) and once on all images with the router routing the
unlabelled ones (the tool's default).

Usage:
    python benchmarks/relevance_digits.py [--epochs 20] [--seeds 2]

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/relevance_digits.json``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import torch
from _common import HERE, machine, stamp, write_section
from torch.utils.data import DataLoader

import rewriter
from rewriter._files import write_json
from rewriter.lab.data import load_data
from rewriter.lab.routing import routing_stats
from rewriter.lab.training import TrainConfig, train

SIZE = 28


def run(seed: int, epochs: int, train_on: str, data) -> dict:
    torch.manual_seed(seed)
    model, _ = rewriter.load_model("relevance_cnn", model_args={"input_size": SIZE})
    config = TrainConfig(epochs=epochs, lr=0.001, optimizer="rmsprop", gamma=1.0, seed=seed, test_every=0)
    cnn1 = train(model, data, config, progress=False).test_accuracy
    step = {"skip-irrelevant-layers": {"epochs": epochs, "train_on": train_on, "seed": seed}}
    result = rewriter.rewrite(
        model, {"steps": [step]}, input_size=SIZE, data=data, pretrained=True, latency=False
    )
    notes = "\n".join(result.report.notes)
    router = float(
        re.search(r"router \(CNN 2\) test accuracy on the labelled test images: ([\d.]+)%", notes)[1]
    )
    labelled = re.search(r"relevance labels of the training images: (.*)", notes)[1]
    stats = routing_stats(result.model, DataLoader(data.test, batch_size=256), (SIZE, SIZE))
    return {"seed": seed, "train_on": train_on, "cnn1": cnn1, "router": router / 100, "cnn3": stats.accuracy,
            "flops_mean": stats.mean_flops, "flops_static": stats.flops_static, "flops_router": stats.flops_router,
            "labels": labelled, "router_labels": stats.label_counts}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    data = load_data("digits", SIZE)
    rows, start = [], time.perf_counter()
    for train_on in ("labelled", "all"):
        for seed in range(args.seeds):
            rows.append(run(seed, args.epochs, train_on, data))
            print(rows[-1], flush=True)
    minutes = (time.perf_counter() - start) / 60

    def mean(key: str, train_on: str) -> str:
        values = [100 * r[key] for r in rows if r["train_on"] == train_on]
        return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0:.1f}"

    lines = [
        stamp("relevance_digits", f" on {machine()}; {args.seeds} seeds, {minutes:.1f} min"),
        "",
        f"digits ({len(data.train)} training, {len(data.test)} test images) at {SIZE} px; relevance_cnn (3 convs of 32 "
        f"filters, dense), RMSprop lr 0.001, {args.epochs} epochs for each of CNN 1, CNN 2, CNN 3; 10 maps x 10 "
        "images per unit. Test accuracy in %, mean ± standard deviation over seeds.",
        "",
        "| CNN 3 trained on | CNN 1 | router (CNN 2) | CNN 3 | FLOPs per image: mean (router included) / CNN 1 (M) |",
        "|---|---|---|---|---|",
    ]
    for train_on in ("labelled", "all"):
        flops = [r for r in rows if r["train_on"] == train_on]
        mean_flops = statistics.fmean(r["flops_mean"] for r in flops) / 1e6
        lines.append(
            f"| {train_on} | {mean('cnn1', train_on)} | {mean('router', train_on)} | {mean('cnn3', train_on)} | "
            f"{mean_flops:.2f} / {flops[0]['flops_static'] / 1e6:.2f} |"
        )
    lines += ["", "Paper 004 on MNIST: CNN 1 98 %, router 62 %, CNN 3 close to 100 %.", "",
              "Relevance labels of the training images (seed 0): " + rows[0]["labels"] + "."]  # fmt: skip
    body = "\n".join(lines)
    print(body)
    write_json(HERE / "results" / "relevance_digits.json", {"machine": machine(), "rows": rows})
    write_section("relevance_digits", "paper 004's CNN 1 / 2 / 3 on digits", body)


if __name__ == "__main__":
    main()
