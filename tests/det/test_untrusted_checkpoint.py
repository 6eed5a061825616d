"""Detection .pth files are read with weights_only=True: a crafted one runs nothing and is refused naming the file."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lda_common.checkpoint_io import UntrustedFile
from lda_det.checkpoint import AtomicDetectionCheckpointer, HeadCheckingCheckpointer

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "projects" / "LDA"


class CreatesAFile:
    """Unpickling this calls open(path, "w"): the file appears if the loader runs pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted(tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"weight": CreatesAFile(marker)}}, path)
    return path, marker


@pytest.mark.parametrize("checkpointer", [AtomicDetectionCheckpointer, HeadCheckingCheckpointer])
def test_a_crafted_pth_is_refused_and_runs_nothing(tmp_path, checkpointer):
    path, marker = crafted(tmp_path)
    with pytest.raises(UntrustedFile, match=rf"^{path} asks for \S+ to be loaded, .* nothing in it was run"):
        checkpointer(nn.Linear(3, 2)).load(str(path))
    assert not marker.exists()


def test_our_checkpoints_still_load(tmp_path):
    torch.manual_seed(0)
    saved = nn.Linear(3, 2)
    AtomicDetectionCheckpointer(saved, str(tmp_path)).save("model_0000009", iteration=9)
    loaded = nn.Linear(3, 2)
    extra = AtomicDetectionCheckpointer(loaded, str(tmp_path)).load(str(tmp_path / "model_0000009.pth"))
    assert extra["iteration"] == 9
    assert torch.equal(loaded.weight, saved.weight) and torch.equal(loaded.bias, saved.bias)


def test_train_net_eval_only_with_a_crafted_pth_is_one_error_line(tmp_path):
    path, marker = crafted(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{PROJECT}")
    env.pop("LDA_DEBUG", None)
    proc = subprocess.run([sys.executable, str(PROJECT / "train_net.py"), "--eval-only", "--config-file",
                           str(REPO / "configs" / "LVIS-LDA" / "synthetic_lt_demo.yaml"), "MODEL.WEIGHTS", str(path),
                           "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "eval")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and not marker.exists(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {path} asks for ")
