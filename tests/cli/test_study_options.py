"""``rewriter study`` takes --num-classes as ``train`` does (issue 24.5), refuses an unknown option pointing at
its own --help, and resumes a folder written before a setup field existed."""

from __future__ import annotations

import json

from ..cli_runner import run

TINY = "tests.nets:tiny_cnn"
QUICK = ("--data", "digits:64", "--epochs", "1", "--max-batches", "1", "--seeds", "1", "--batch-size", "16")


def study(capsys, out, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "study", "--model", TINY, "--recipe", "baseline", *QUICK, "--out", str(out), "--quiet",
               *extra)  # fmt: skip


def test_num_classes_is_recorded_and_a_count_the_data_lacks_fails_its_cells(capsys, tmp_path):
    code, _, err = study(capsys, tmp_path / "ten", "--num-classes", "10")  # digits has 10 classes
    assert code == 0, err
    assert json.loads((tmp_path / "ten" / "study.json").read_text())["setup"]["num_classes"] == 10
    code, _, _ = study(capsys, tmp_path / "three", "--num-classes", "3")
    assert code == 3
    assert "num_classes=3, but digits:64 has 10 classes" in (tmp_path / "three" / "summary.md").read_text()


def test_an_unknown_option_points_at_the_commands_own_help(capsys, tmp_path):
    code, _, err = study(capsys, tmp_path / "s", "--num-clases", "10")
    assert code == 2 and err.startswith(
        "error: unrecognized arguments: --num-clases 10 (see `rewriter study --help`)"
    )


def test_a_folder_written_before_num_classes_existed_resumes(capsys, tmp_path):
    out = tmp_path / "old"
    assert study(capsys, out)[0] == 0
    record = json.loads((out / "study.json").read_text())
    del record["setup"]["num_classes"]  # as an older version wrote it
    (out / "study.json").write_text(json.dumps(record))
    code, _, err = study(capsys, out)
    assert code == 0 and "another setup" not in err
    code, _, err = study(capsys, out, "--num-classes", "10")  # a value other than the default is a change
    assert code == 1 and "differs in num_classes" in err
