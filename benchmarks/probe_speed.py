"""How long `rewriter probe` and `rewriter saturation` take on VGG16 at 2000 training and 500 test images.

Issue 13 measured `rewriter probe vgg16.pt --data synthetic` at about 19 minutes here (60-95 s per layer,
one forward pass per layer group, L-BFGS on all pooled features in float64, saturation in a second pass) and
`rewriter saturation` at about 3 minutes. This script trains cifar_vgg16 briefly on `synthetic` (or takes
``--model FILE``), then times in one process:

- probes now: `run_probes(..., saturation=True)`: one pass per split, wide layers fitted on the compact
  coordinates of the training images;
- probes before, on the ``--compare`` widest layers only (the whole run took 19 minutes): the same features
  fitted by the former ``fit_probe`` (kept below: all features, random initial weights, L-BFGS on every
  thread), so the ratio per layer is measured in the same machine state;
- saturation now and before: `compute_saturation` against the former accumulator (raw sums of float64
  products after a reshape copy), kept below as the reference.

Usage:
    python benchmarks/probe_speed.py [--model vgg16.pt] [--images 2000] [--compare 3] [--no-write]

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/probe_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F
from _common import machine, publish, stamp
from torch.utils.data import DataLoader

import rewriter
from rewriter.lab import saturation as saturation_module
from rewriter.lab.data import load_data
from rewriter.lab.probes import _collect, fit_probe, run_probes
from rewriter.lab.sampling import sample as subset
from rewriter.lab.saturation import compute_saturation, tracked_layers


def former_fit_probe(train_x, train_y, test_x, test_y, classes, *, weight_decay=1e-4, iterations=100):
    """``fit_probe`` before issue 13."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    train_x, test_x = ((train_x - mean) / std).double(), ((test_x - mean) / std).double()
    linear = torch.nn.Linear(train_x.shape[1], classes).double()
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train_x), train_y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (float((linear(train_x).argmax(1) == train_y).double().mean()),
                float((linear(test_x).argmax(1) == test_y).double().mean()))  # fmt: skip


class FormerAccumulator(saturation_module.CovarianceAccumulator):
    """The accumulator before issue 13: a reshape copy, a float64 copy, raw sums of products."""

    def update(self, samples: torch.Tensor) -> None:
        if samples.dim() > 2:
            samples = samples.movedim(1, -1).reshape(-1, samples.shape[1])
        samples = samples.detach().to(torch.float64)
        self.count += samples.shape[0]
        self.total += samples.sum(0)
        self.outer += samples.T @ samples

    def covariance(self) -> torch.Tensor:
        mean = self.total / self.count
        return self.outer / self.count - torch.outer(mean, mean)


def trained_model(path: str | None) -> tuple[torch.nn.Module, str]:
    if path:
        return rewriter.load(path).eval(), path
    from rewriter.cli import main

    target = os.path.join(tempfile.mkdtemp(), "vgg16.pt")
    main(["train", "cifar_vgg16", "--data", "synthetic", "--epochs", "3", "--lr", "0.02", "-o", target])
    return rewriter.load(target).eval(), "cifar_vgg16 trained 3 epochs on synthetic (lr 0.02)"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def former_fits(model, data, images: int, count: int) -> list[dict]:
    """The ``count`` widest layers fitted on all their pooled features and on the compact coordinates."""
    train, test = subset(data.train_plain, images), subset(data.test, images)
    names = [name for name, _ in tracked_layers(model)]
    passes = [
        _collect(model, names, DataLoader(s, batch_size=128), torch.device("cpu")) for s in (train, test)
    ]
    sizes = {n: torch.cat(passes[0].features[n]).shape[1] for n in names}
    rows = []
    for name in sorted(sizes, key=sizes.get, reverse=True)[:count]:
        args = [torch.cat(passes[0].features[name]), torch.cat(passes[0].labels),
                torch.cat(passes[1].features[name]), torch.cat(passes[1].labels), data.num_classes]  # fmt: skip
        torch.manual_seed(0)
        (_, before_acc), before_s = timed(former_fit_probe, *args)
        (_, now_acc), now_s = timed(fit_probe, *args)
        rows.append({"layer": name, "features": sizes[name], "before_s": before_s, "now_s": now_s,
                     "test_accuracy_before": before_acc, "test_accuracy_now": now_acc})  # fmt: skip
    return rows


def saturation_times(model, data, images: int) -> dict:
    loader = DataLoader(subset(data.train_plain, images), batch_size=64)
    _, now = timed(compute_saturation, model, loader)
    current = saturation_module.CovarianceAccumulator
    saturation_module.CovarianceAccumulator = FormerAccumulator
    try:
        _, before = timed(compute_saturation, model, loader)
    finally:
        saturation_module.CovarianceAccumulator = current
    with rewriter.analysis.eval_mode(model), torch.no_grad():
        _, plain = timed(lambda: [model(x) for x, _ in loader])
    return {"plain_forward_s": plain, "saturation_s": now, "saturation_before_s": before}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="a trained VGG16 model file (default: train one for 3 epochs)")
    parser.add_argument("--images", type=int, default=2000, help="training images (the test split has 500)")
    parser.add_argument("--compare", type=int, default=3, help="widest layers to fit the former way too")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    model, described = trained_model(args.model)
    data = load_data(f"synthetic:{args.images}", 32)
    load = os.getloadavg()[0]
    report, probe_s = timed(run_probes, model, data.train_plain, data.test, data.num_classes,
                            max_samples=args.images, saturation=True, progress=True)  # fmt: skip
    fits = former_fits(model, data, args.images, args.compare)
    sat = saturation_times(model, data, args.images)
    lines = [
        stamp("probe_speed", f" on {machine()}; load average {load:.1f} at the start (a shared machine)"),
        "",
        f"Model: {described}; {report.train_images} training and {report.test_images} test images of `synthetic`.",
        "",
        f"- probes, whole run (every layer's features, the saturation and the model's accuracy from one pass per "
        f"split; {len(report.layers)} layers fitted): **{probe_s:.0f} s**",
        f"- saturation alone, {report.train_images} images: {sat['saturation_s']:.1f} s now, "
        f"{sat['saturation_before_s']:.1f} s with the former accumulator; a plain forward pass takes "
        f"{sat['plain_forward_s']:.1f} s",
        "",
        "The widest layers fitted the former way (all features, L-BFGS on every thread) and now:",
        "",
        "| layer | features | fit before (s) | fit now (s) | ratio | test accuracy before / now |",
        "|---|---|---|---|---|---|",
        *(f"| {r['layer']} | {r['features']} | {r['before_s']:.1f} | {r['now_s']:.1f} | "
          f"{r['before_s'] / r['now_s']:.1f} | {100 * r['test_accuracy_before']:.1f} / "
          f"{100 * r['test_accuracy_now']:.1f} % |" for r in fits),
    ]  # fmt: skip
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        results = {"load": load, "probe_s": probe_s, "fits": fits, "saturation": sat}
        publish("probe_speed", "probes and saturation on VGG16 at 2000 images", body, results)


if __name__ == "__main__":
    main()
