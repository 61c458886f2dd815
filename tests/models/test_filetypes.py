"""What a file is, and why it cannot be used, in the reader's own words: a file that cannot be opened says
why (not that it does not exist), a damaged one keeps the reader's reason, a pickled module names its class."""

from __future__ import annotations

import builtins
import zipfile

import pytest
import torch
from torch import nn

from rewriter import ModelFileError, UntrustedPickleError
from rewriter.models import filetypes, load_model


def test_a_file_that_cannot_be_opened_says_why_not_that_it_is_missing(tmp_path, monkeypatch):
    target = tmp_path / "locked.pt"
    torch.save({"w": torch.zeros(1)}, target)
    real_open = builtins.open

    def refuse(file, *args, **kwargs):  # chmod 000 does not stop root: refuse this one path instead
        if str(file) == str(target):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    assert filetypes.sniff(target) == "unreadable"
    with pytest.raises(ModelFileError, match=r"locked.pt cannot be read: Permission denied$"):
        load_model(str(target))


def test_a_damaged_pickle_keeps_the_readers_reason(tmp_path):
    target = tmp_path / "damaged.pt"
    with zipfile.ZipFile(target, "w") as archive:  # a torch archive whose pickle no reader accepts ('g', 103)
        archive.writestr("archive/data.pkl", b"\x80\x02garbage")
        archive.writestr("archive/version", b"3\n")
    with pytest.raises(ModelFileError, match=r"is corrupt: .* \(UnpicklingError: Unsupported operand 103\)"):
        filetypes.read_structure(target)


def test_a_pickled_module_is_refused_naming_its_class(tmp_path):
    target = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), target)
    with pytest.raises(UntrustedPickleError, match=r"torch\.nn\.modules\.linear\.Linear"):
        filetypes.read_structure(target)
