"""--device: every command that trains or measures takes it, defaults to CUDA where there is one, and
refuses a CUDA device on a machine without one with one line, before any work."""

from __future__ import annotations

import pytest
import torch

from rewriter.cli import main
from rewriter.lab.training import TrainError, resolve_device

COMMANDS = {
    "train": ["train", "tests.nets:tiny_cnn", "--data", "synthetic:32", "--epochs", "1", "-o", "{tmp}/m.pt"],
    "study": ["study", "--model", "tests.nets:tiny_cnn", "--recipe", "baseline", "--data", "synthetic:32",
              "--epochs", "1", "--seeds", "1", "--out", "{tmp}/s"],
    "saturation": ["saturation", "tests.nets:tiny_cnn", "--data", "synthetic:32"],
    "probe": ["probe", "tests.nets:tiny_cnn", "--data", "synthetic:32"],
    "relevance": ["relevance", "tests.nets:tiny_cnn", "--data", "synthetic:32"],
}  # fmt: skip


def test_the_default_device_is_cuda_where_there_is_one():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TrainError, match="is not a device"):
        resolve_device("gpu7")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", COMMANDS)
def test_a_cuda_device_on_a_machine_without_one_is_one_line(command, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    assert main([*argv, "--device", "cuda"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda: torch sees no CUDA on this machine; use --device cpu" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())
