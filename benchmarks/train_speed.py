"""How fast training runs on this machine, against the machine's own limit.

For resnet18 (ImageNet stem), cifar_resnet18 and cifar_vgg11 at 32 px with 10 classes: images/s of one
training step (batch 128, SGD, forward + backward + update; data already in memory) in fp32, fp32 +
channels_last, bf16 autocast and bf16 + channels_last (and with ``--compile``, torch.compile of the best),
and the FLOP/s that achieves: 3 x the forward multiply-adds x 2 per image (backward costs about twice the
forward). Beside it, in the same process and with the same threads, the FLOP/s of a plain fp32 and bf16
matrix multiply of similar size (the machine's practical peak), the images/s of the data loader alone
(the batch path of ``rewriter.lab.batches`` against torchvision's per-image ImageFolder path), and the top
ops of one profiled step.

Usage:
    python benchmarks/train_speed.py                 # all models and modes (a few minutes)
    python benchmarks/train_speed.py --quick         # 2 steps each, one model: a check of the script
    python benchmarks/train_speed.py --threads 1     # where other work runs (the default: all cores)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _common import HERE, machine, stamp, write_section

from rewriter._files import write_json
from rewriter.analysis.traced_model import analyze
from rewriter.lab.batches import TensorImages, loader
from rewriter.lab.precision import Precision
from rewriter.lab.training import TrainStep, plain_forward
from rewriter.models.sources import load_model

MODELS = ["resnet18", "cifar_resnet18", "cifar_vgg11"]
MODES = {
    "fp32": Precision("fp32"),
    "fp32 + channels_last": Precision("fp32", channels_last=True),
    "bf16": Precision("bf16"),
    "bf16 + channels_last": Precision("bf16", channels_last=True),
}
BATCH = 128


def step_rate(name: str, precision: Precision, steps: int, *, compile_model: bool = False) -> float:
    """Images/s of a training step: the median over ``steps`` timed steps after two warm-up ones."""
    torch.manual_seed(0)
    model = precision.prepare(load_model(name, num_classes=10)[0].train())
    if compile_model:
        model = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = TrainStep(optimizer, precision, torch.device("cpu"), plain_forward)  # what training runs
    batch = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        step.backward(step.loss(model, batch)[0])
        if i >= 2:
            times.append(time.perf_counter() - start)
    return BATCH / statistics.median(times)


def matmul_peak(dtype: torch.dtype, size: int = 1024, repeats: int = 10) -> float:
    """FLOP/s of a ``size`` cube matrix multiply (2 size^3 FLOPs), the median of ``repeats``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


def loader_rates(folder: Path | None, batches: int) -> dict[str, float]:
    """Images/s of the batch loader (uint8 in memory, augmented per batch) and, on a folder, of torchvision's
    ImageFolder with per-image transforms (the path before issue 19)."""
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8)
    data = TensorImages(images, torch.randint(0, 10, (50_000,)), (32, 32), augment=True)
    rates = {"batch loader (uint8 in memory, batch augmentation)": _rate(loader(data, batch_size=BATCH,
                                                                               shuffle=True), batches)}  # fmt: skip
    if folder is not None and (folder / "train").is_dir():
        import torchvision
        from torchvision import transforms

        tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                 transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])  # fmt: skip
        per_image = torchvision.datasets.ImageFolder(str(folder / "train"), transform=tf)
        rates["ImageFolder, JPEG decoded and transformed per image (before)"] = _rate(
            torch.utils.data.DataLoader(per_image, batch_size=BATCH, shuffle=True), batches
        )
    return rates


def _rate(batches, count: int) -> float:
    it = iter(batches)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(count):
        seen += len(next(it)[1])
    return seen / (time.perf_counter() - start)


def top_ops(name: str, precision: Precision, count: int = 8) -> list[tuple[str, float]]:
    """The ops of one profiled training step by self CPU time: (name, share of the step)."""
    from torch.profiler import ProfilerActivity, profile

    model = precision.prepare(load_model(name, num_classes=10)[0].train())
    x, y = precision.inputs(torch.randn(BATCH, 3, 32, 32)), torch.randint(0, 10, (BATCH,))
    for _ in range(2):
        with precision.autocast(torch.device("cpu")):
            torch.nn.functional.cross_entropy(model(x).float(), y).backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof, precision.autocast(torch.device("cpu")):
        torch.nn.functional.cross_entropy(model(x).float(), y).backward()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, round(e.self_cpu_time_total / total, 3)) for e in events[:count]]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model and mode")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the fastest mode")
    parser.add_argument("--data", type=Path, help="an unpacked CIFAR-10 folder, for the ImageFolder loader")
    parser.add_argument("--quick", action="store_true", help="2 steps of resnet18: a check of the script")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_speed.json")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    models, steps = (MODELS[:1], 2) if args.quick else (MODELS, args.steps)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows, results = [], {"machine": machine(), "peak_flop_s": peak, "models": {}}
    for name in models:
        macs = analyze(load_model(name, num_classes=10)[0], (32, 32)).flops
        per_mode = {mode: step_rate(name, p, steps) for mode, p in MODES.items()}
        if args.compile:
            best = max(per_mode, key=per_mode.get)
            per_mode[f"{best} + torch.compile"] = step_rate(name, MODES[best], steps, compile_model=True)
        results["models"][name] = {"forward_macs": macs, "images_per_s": per_mode}
        for mode, rate in per_mode.items():
            achieved = rate * 3 * macs * 2
            limit = peak["bf16" if mode.startswith("bf16") else "fp32"]
            rows.append(f"| {name} | {macs / 1e6:.0f} M | {mode} | {rate:.0f} | {achieved / 1e9:.1f} | "
                        f"{100 * achieved / limit:.0f} % |")  # fmt: skip
        print(rows[-len(per_mode) :], flush=True)
    results["loader_images_per_s"] = loader_rates(args.data, 5 if args.quick else 40)
    profiled = "cifar_resnet18" if "cifar_resnet18" in models else models[0]
    results["top_ops"] = {
        f"{profiled} bf16 + channels_last": top_ops(profiled, MODES["bf16 + channels_last"])
    }
    write_json(args.out, results)
    if args.quick:
        print(results)
        return
    body = "\n".join([
        stamp("train_speed", f" on {machine()}; median of {steps} steps after 2 warm-up ones, batch {BATCH}"),
        "", f"Matrix multiply (1024^3) in the same process: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s.", "",
        "| model | forward MACs | mode | images/s | achieved GFLOP/s | of the matmul peak |",
        "|---|---|---|---|---|---|",
        *rows, "", "Data loader alone (batch 128, training augmentation): "
        + "; ".join(f"{k}: {v:.0f} images/s" for k, v in results["loader_images_per_s"].items())
        + ".", "",
        f"Top ops of one step of {profiled} (self CPU time): "
        + ", ".join(f"{k} {100 * v:.0f} %" for k, v in next(iter(results["top_ops"].values()))) + ".",
    ])  # fmt: skip
    print(body)
    write_section("train_speed", "training speed against the machine's matmul peak", body)


if __name__ == "__main__":
    main()
