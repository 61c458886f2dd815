"""What every benchmark shares: a description of the machine, and writing its section of the README."""

from __future__ import annotations

import argparse
import platform
import statistics
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision

import rewriter
from rewriter._files import atomic_path, write_json

HERE = Path(__file__).parent
CIFAR10_ARCHIVE = (
    HERE.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
)  # see ../shared/data/README.md


def machine() -> str:
    """CPU model, torch threads and versions: what a timing needs next to it."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, rewriter {rewriter.__version__}"
    )


def median_time(fn: Callable[..., Any], *args: Any, repeats: int, **kwargs: Any) -> float:
    """Median wall time of ``fn(*args, **kwargs)`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stamp(script: str, extra: str = "") -> str:
    return f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/{script}.py`{extra}."


def write_section(script: str, title: str, body: str) -> str:
    """Replace the section of ``script`` in ``benchmarks/README.md`` (appended the first time); return it."""
    begin, end = f"<!-- {script}:begin -->", f"<!-- {script}:end -->"
    section = f"{begin}\n\n{body.strip()}\n\n{end}"
    path = HERE / "README.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n## `{script}.py`: {title}\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    with atomic_path(path) as tmp:
        tmp.write_text(head + section + rest.partition(end)[2])
    return section


def publish(script: str, title: str, body: str, results: dict[str, Any]) -> None:
    """Write ``results`` (with the machine) to ``results/SCRIPT.json`` and ``body`` as the script's README
    section: what every benchmark does at its end unless ``--no-write``."""
    write_json(HERE / "results" / f"{script}.json", {"machine": machine(), **results})
    write_section(script, title, body)


def zoo_parser(doc: str, *, repeats: int) -> argparse.ArgumentParser:
    """The options of the benchmarks that run over torchvision's models at several sizes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="*", help="shell-style filter over torchvision model names")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not update the README")
    return parser


def unpacked_cifar10(folder: Path, archive: Path = CIFAR10_ARCHIVE) -> Path:
    """``folder`` holding the shared CIFAR-10 copy (train/ and test/ of class folders), unpacked there once;
    a missing archive ends the benchmark with the place to look."""
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        if not archive.is_file():
            raise SystemExit(
                f"no {archive}: the benchmark reads the shared CIFAR-10 copy (../shared/data/README.md)"
            )
        print(f"unpacking {archive} into {folder}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    return folder
