"""Before/after tables of every strategy on the papers' models at 32 px (10 classes).

For each model and strategy: the rewrite's report (params, FLOPs, b_min, unproductive layers, CPU latency
at batch 1), or the reason the strategy refused. Latency is the median of 15 runs after 3 warm-ups.

Usage:
    python benchmarks/rewrite_examples.py                          # resnet18 resnet34 vgg16 cifar_vgg16
    python benchmarks/rewrite_examples.py --models cifar_vgg19 --strategies truncate

Writes the results section of ``benchmarks/README.md`` and ``benchmarks/results/rewrite_examples.json``.
"""

from __future__ import annotations

import argparse

from _common import HERE, stamp, write_section

import rewriter
from rewriter._files import write_json

MODELS = ["resnet18", "resnet34", "vgg16", "cifar_vgg16"]
STRATEGIES = [
    ("truncate", {}),
    ("truncate", {"rule": "output"}),
    ("remove-stem-downsampling", {}),
    ("remove-stem-downsampling", {"mode": "cifar-stem"}),
]


def label(name: str, params: dict) -> str:
    return name + "".join(f" {k}={v}" for k, v in params.items())


def run(models: list[str], strategies: list[tuple[str, dict]]) -> tuple[list[dict], str]:
    entries, sections = [], []
    for model_name in models:
        for name, params in strategies:
            model, _ = rewriter.load_model(model_name, num_classes=10)
            title = f"{model_name}, {label(name, params)}"
            print(title, flush=True)
            try:
                result = rewriter.rewrite(model, {"steps": [{name: params}]}, input_size=32, name=model_name)
            except rewriter.RewriterError as err:
                entries.append({"model": model_name, "strategy": label(name, params), "refused": str(err)})
                sections.append(f"**{title}**: refused: {err}")
                continue
            entries.append(
                {"model": model_name, "strategy": label(name, params), "report": result.report.to_json()}
            )
            sections.append(f"**{title}**\n\n```\n{result.report.format()}\n```")
    return entries, "\n\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--strategies", nargs="+", help="strategy names (default: each with its variants)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    strategies = [(s, {}) for s in args.strategies] if args.strategies else STRATEGIES
    entries, text = run(args.models, strategies)
    body = f"{stamp('rewrite_examples')}\n\n{text}"
    print(body)
    if not args.no_write:
        write_json(HERE / "results" / "rewrite_examples.json", entries)
        write_section("rewrite_examples", "every strategy on the papers' models at 32 px", body)


if __name__ == "__main__":
    main()
