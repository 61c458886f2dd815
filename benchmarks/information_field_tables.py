"""Paper 003's Tables 3 and 6 rebuilt without training: the organizer's architectures and the decomposer's costs.

Table 3 (CIFAR-10, 32 px): each network before and after ``reorganize-stages``, blocks per stage, params and
MFLOPs (fvcore, multiply-adds) beside the paper's figures (Pytorch-OpCounter, also multiply-adds).
Table 6: VGG16-opt decomposed with DW+PW, DW+GPW and DW+RPW. Accuracies need training and are not here.

Usage:
    python benchmarks/information_field_tables.py

Writes its section of ``benchmarks/README.md`` and ``benchmarks/results/information_field_tables.json``.
"""

from __future__ import annotations

from _common import HERE, stamp, write_section

import rewriter
from rewriter._files import write_json

# paper 003 Table 3: (MFLOPs, params in M) before and after, and the blocks per stage it reports
TABLE_3 = {
    "cifar_vgg16": ((310, 14.73), (370, 5.10), None),
    "cifar_vgg19": ((400, 20.04), (490, 8.09), None),
    "cifar_mobilenet": ((50, 3.22), (50, 1.13), "{4, 4, 2, 2, 1}"),
    "cifar_resnet50": ((1300, 23.52), (1310, 17.24), "{5, 5, 4, 2}"),
}
# paper 003 Table 6 (VGG16-opt, CIFAR-10): (MFLOPs, params in M)
TABLE_6 = {
    ("dw-pw", 2, 0.5): (50, 1.11),
    ("dw-gpw", 2, 0.5): (30, 0.67),
    ("dw-gpw", 4, 0.5): (20, 0.36),
    ("dw-gpw", 8, 0.5): (10, 0.20),
    ("dw-rpw", 2, 0.5): (30, 0.66),
    ("dw-rpw", 4, 0.5): (20, 0.36),
    ("dw-rpw", 8, 0.5): (10, 0.20),
}


def table_3() -> tuple[list[dict], list[str]]:
    rows, lines = (
        [],
        [
            "| network | blocks per stage (ours) | paper | MFLOPs ours / paper | params (M) ours / paper |",
            "|---|---|---|---|---|",
        ],
    )
    for name, (before, after, paper_blocks) in TABLE_3.items():
        model, _ = rewriter.load_model(name)
        result = rewriter.rewrite(model, {"steps": ["reorganize-stages"]}, input_size=32, latency=False)
        base, opt = result.report.rows
        blocks = result.plans[0].data["blocks_per_stage"]
        rows.append(
            {
                "model": name,
                "blocks_per_stage": blocks,
                "iterations": result.plans[0].data["iterations"],
                "before": base.to_json(),
                "after": opt.to_json(),
            }
        )
        lines.append(
            f"| {name} | - | - | {base.flops / 1e6:.0f} / {before[0]} | {base.params / 1e6:.2f} / {before[1]} |"
        )
        ours = "{" + ", ".join(str(n) for n in blocks.values()) + "}"
        lines.append(
            f"| {name}-opt | {ours} | {paper_blocks or '-'} | {opt.flops / 1e6:.0f} / {after[0]} | "
            f"{opt.params / 1e6:.2f} / {after[1]} |"
        )
    return rows, lines


def table_6() -> tuple[list[dict], list[str]]:
    rows, lines = [], ["| VGG16-opt + | MFLOPs ours / paper | params (M) ours / paper |", "|---|---|---|"]
    model, _ = rewriter.load_model("cifar_vgg16")
    for (block, groups, overlap), (flops, params) in TABLE_6.items():
        recipe = {
            "steps": [
                "reorganize-stages",
                {"decompose-kernels": {"block": block, "groups": groups, "overlap": overlap}},
            ]
        }
        result = rewriter.rewrite(model, recipe, input_size=32, latency=False)
        row = result.report.rows[-1]
        label = (
            block.upper()
            + ("" if block == "dw-pw" else f"-g{groups}")
            + ("-o50%" if block == "dw-rpw" else "")
        )
        rows.append({"variant": label, **row.to_json()})
        lines.append(f"| {label} | {row.flops / 1e6:.1f} / {flops} | {row.params / 1e6:.2f} / {params} |")
    return rows, lines


def main() -> None:
    rows3, lines3 = table_3()
    rows6, lines6 = table_6()
    body = "\n".join(
        [
            stamp("information_field_tables"),
            "",
            "Table 3 (stage-level organizer, 32 px, 10 classes; paper figures from Pytorch-OpCounter):",
            "",
            *lines3,
            "",
            "Table 6 (kernel-level decomposer on our VGG16-opt; the paper's baseline row says 9.64 M params there):",
            "",
            *lines6,
        ]
    )
    print(body)
    write_json(HERE / "results" / "information_field_tables.json", {"table_3": rows3, "table_6": rows6})
    write_section("information_field_tables", "paper 003's Tables 3 and 6 without training", body)


if __name__ == "__main__":
    main()
