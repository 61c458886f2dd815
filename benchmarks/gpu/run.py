"""What to run when a GPU is lent: training speed, then paper 000's CIFAR-10 settings at full size, in about
10 minutes of GPU time.

1. Images/s of one training step (batch 256) for resnet18, cifar_resnet18 and cifar_vgg11 at 32 px in fp32
   and bf16 + channels_last, with the whole of CIFAR-10 held on the GPU as uint8 and augmented there.
2. The study of paper 000's CIFAR-10 setting: resnet18 and resnet34 (ImageNet stems) at 32 px, 10 classes,
   all 50,000 training and 10,000 test images, recipes baseline, ``remove-stem-downsampling`` (mode
   ``cifar-stem``, the paper's variant), ``truncate`` and the optimizer's cost-first choice, 3 seeds; SGD
   0.1, momentum 0.9, batch 64 as the paper, and as many epochs as fit the budget (the paper's 60 if
   they do), the rate divided by 10 at each third. The epochs are set from the speeds of part 1: the
   script says what it chose and why.

The results go to ``benchmarks/results/gpu/`` (``speed.json``, the study folder) with the GPU named.
Tested on the CPU with ``--tiny`` (a few hundred images, 1 epoch, 1 seed): it must run end to end there.

Usage (from the repository root):
    python benchmarks/gpu/run.py --data DIR                      # on the GPU machine, CIFAR-10 unpacked in DIR
    python benchmarks/gpu/run.py --data DIR --device cpu --tiny  # the check on a CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(HERE.parent)]

import rewriter  # noqa: E402
from rewriter.lab.batches import loader  # noqa: E402
from rewriter.lab.data import load_data  # noqa: E402
from rewriter.lab.precision import resolve_precision  # noqa: E402
from rewriter.lab.study import Study, StudySetup, parse_variant, run_study  # noqa: E402
from rewriter.lab.training import TrainStep, plain_forward  # noqa: E402
from rewriter.models.sources import load_model  # noqa: E402

SPEED_MODELS = ["resnet18", "cifar_resnet18", "cifar_vgg11"]
STUDY_MODELS = ["resnet18", "resnet34"]
PAPER_EPOCHS = 60


def speed(data, device: torch.device, precision: str, steps: int, batch: int = 256) -> dict[str, float]:
    """Images/s of a training step of each model, batches cut and augmented on the device."""
    chosen = resolve_precision(precision, device)
    rates = {}
    for name in SPEED_MODELS:
        model = chosen.prepare(load_model(name, num_classes=10)[0].to(device).train())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        step_of = TrainStep(optimizer, chosen, device, plain_forward)  # what training runs, fp16 scaling too
        batches = _cycle(loader(data.train, batch_size=batch, shuffle=True, device=device, drop_last=True))
        done, start = 0, None
        for step in range(steps + 3):
            if step == 3:  # after warm-up (cuDNN's autotuning)
                _sync(device)
                start, done = time.perf_counter(), 0
            x, y = next(batches)
            step_of.backward(step_of.loss(model, (x, y))[0])
            done += len(y)
        _sync(device)
        rates[name] = done / (time.perf_counter() - start)
        print(f"{name} {chosen.label}: {rates[name]:.0f} images/s", flush=True)
    return rates


def _cycle(batches):
    while True:
        yield from batches


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cost_first_recipe(model: str, out: Path) -> Path:
    """The recipe ``rewriter optimize MODEL --input-size 32 --num-classes 10`` chooses by default, as YAML."""
    import yaml

    result = rewriter.optimize_model(model, input_size=32, num_classes=10, dry_run=True)
    path = out / f"{model}-32-cost-first.yaml"
    path.write_text(yaml.safe_dump(result.recipe.to_dict(), sort_keys=False))
    return path


#: time per epoch of each cell against resnet18's baseline: resnet34 has about twice its FLOPs; truncate and the
#: cost-first cut remove most of them; cifar-stem keeps 16x larger maps (0.04 -> 0.56 GFLOPs, paper 000), which a
#: GPU runs at better utilisation than the baseline's tiny ones: counted as 6x
MODEL_WEIGHT = {"resnet18": 1.0, "resnet34": 2.0}
RECIPE_WEIGHT = {"baseline": 1.0, "cifar-stem": 6.0, "truncate": 0.7, "cost-first": 0.4}


def epochs_that_fit(budget_s: float, rate: float, images: int, seeds: int) -> int:
    """The paper's epochs if the whole study fits ``budget_s`` when resnet18's baseline trains at ``rate``
    images/s, else as many as fit; at least 1."""
    weight = sum(MODEL_WEIGHT.values()) * sum(RECIPE_WEIGHT.values()) * seeds
    return max(1, min(PAPER_EPOCHS, int(budget_s / (images / rate * weight))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 unpacked (train/ and test/)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget-s", type=float, default=420, help="seconds of training for the study")
    parser.add_argument("--tiny", action="store_true", help="a CPU check: 256 images, 1 epoch, 1 seed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    samples = {"train_samples": 256, "test_samples": 256} if args.tiny else {}
    data = load_data(f"imagefolder:{args.data}", 32, **samples)
    rates = {p: speed(data, device, p, *((3, 32) if args.tiny else (30, 256))) for p in ("fp32", "auto")}
    (args.out / "speed.json").write_text(json.dumps({"device": name, "images_per_s": rates}, indent=2))
    recipes = ["baseline", str(ROOT / "examples" / "recipes" / "cifar-stem.yaml"), "truncate"]
    seeds = [0] if args.tiny else [0, 1, 2]
    # batch 64 (the paper's) runs at about half the images/s of the batch of 256 timed above
    epochs = (
        1 if args.tiny else epochs_that_fit(args.budget_s, rates["auto"]["resnet18"] / 2, len(data.train), 3)
    )
    print(
        f"{name}: {epochs} epochs of {len(data.train)} images fit {args.budget_s:.0f} s for "
        f"{len(STUDY_MODELS) * (len(recipes) + 1) * len(seeds)} cells (the paper trains {PAPER_EPOCHS})",
        flush=True,
    )
    setup = StudySetup(data=f"imagefolder:{args.data}", input_size=(32, 32), epochs=epochs, lr=0.1, batch_size=64,
                       warmup_epochs=0, precision="auto", latency_repeats=3, **samples)  # fmt: skip
    for model in STUDY_MODELS:
        variants = [parse_variant(r) for r in [*recipes, str(cost_first_recipe(model, args.out))]]
        study = Study([model], variants, seeds, setup, args.out / "study")
        run_study(study, device=str(device), progress=False)
    print((args.out / "study" / "summary.md").read_text())


if __name__ == "__main__":
    main()
