"""lda_common.atomic_files: a failed write leaves the previous file, two writers never share a temporary,
a full disk says so; JSON is written strict."""
import json
import os

import numpy as np
import pytest
import torch

from lda_common import atomic_files
from lda_common.atomic_files import (atomic_save, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                     is_temporary)


def test_checkpoint_writes_are_atomic(tmp_path):
    path = tmp_path / "last_checkpoint.pth"
    atomic_save({"epoch": 1}, str(path))
    with pytest.raises(Exception):
        atomic_save({"epoch": 2, "bad": lambda: None}, str(path))  # fails while pickling
    assert torch.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last_checkpoint.pth"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:664] . "
                                                  "unexpected pos 533824 vs 533712")])
def test_a_full_disk_says_so_and_names_the_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "last_checkpoint.pth"
    atomic_save({"epoch": 1}, str(path))

    def full_disk(obj, target):
        with open(target, "wb") as handle:
            handle.write(b"partial")
        raise failure

    monkeypatch.setattr(atomic_files.torch, "save", full_disk)
    with pytest.raises(OSError, match=f"no space left on device while writing {path}") as raised:
        atomic_save({"epoch": 2}, str(path))
    assert raised.value.errno == 28
    monkeypatch.undo()
    assert torch.load(path)["epoch"] == 1 and os.listdir(tmp_path) == ["last_checkpoint.pth"]


def test_two_writers_of_one_file_never_share_a_temporary(tmp_path, monkeypatch):
    """Writer A is interrupted by writer B of the same file (another process, in real life): with one fixed
    temporary name B would rename A's half-written file away and A's rename would fail."""
    path = str(tmp_path / "model_best.pth")
    real_save = torch.save
    names = []

    def save(obj, target):
        names.append(os.path.basename(target))
        real_save(obj, target)
        if obj["writer"] == "A":
            atomic_save({"writer": "B"}, path)

    monkeypatch.setattr(atomic_files.torch, "save", save)
    atomic_save({"writer": "A"}, path)
    monkeypatch.undo()
    assert torch.load(path)["writer"] == "A" and os.listdir(tmp_path) == ["model_best.pth"]
    assert len(set(names)) == 2 and all(is_temporary(name) and name.startswith("model_best.pth.") for name in names)
    assert not is_temporary("model_best.pth") and not is_temporary("notes.tmp")


def test_a_failed_text_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write_text(str(path), "first")

    def interrupted(tmp, target):
        raise KeyboardInterrupt  # Ctrl-C between writing the temporary and renaming it

    monkeypatch.setattr(atomic_files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(str(path), "second")
    monkeypatch.undo()
    assert path.read_text() == "first" and os.listdir(tmp_path) == ["results.json"]


def test_json_is_strict_with_nan_as_null_and_numpy_as_numbers(tmp_path):
    path = tmp_path / "analysis.json"
    atomic_write_json(str(path), {"ap": np.array([50.0, np.nan]), "mean": np.float32(0.5), 3: float("inf")}, indent=1)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ap": [50.0, None], "mean": 0.5, "3": None}


def test_bytes_are_written_as_given(tmp_path):
    atomic_write_bytes(str(tmp_path / "weights.pkl"), b"\x80\x04binary")
    assert (tmp_path / "weights.pkl").read_bytes() == b"\x80\x04binary" and os.listdir(tmp_path) == ["weights.pkl"]
