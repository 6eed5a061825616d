"""train_net.py and projects/LDA/tools/*.py print a user's mistake as one line "error: ..." (exit status 1)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "projects" / "LDA"


def run(script, *argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{PROJECT}")
    env.pop("LDA_DEBUG", None)
    return subprocess.run([sys.executable, str(PROJECT / script), *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("script, argv, message", [
    ("train_net.py", ["--config-file", "{tmp}/none.yaml"], "error: config file not found: {tmp}/none.yaml"),
    ("tools/loss_scale.py", ["--config-file", "{tmp}/none.yaml"], "error: config file not found: {tmp}/none.yaml"),
    ("tools/analyze.py", ["{tmp}/no_run"], "error: run directory not found: {tmp}/no_run"),
    ("tools/convert_torchvision_to_d2.py", ["{tmp}/none.pth", "{tmp}/out.pkl"],
     "error: [Errno 2] No such file or directory: '{tmp}/none.pth'"),
    ("tools/build_lvis_v1_counts.py", ["{tmp}/none.json", "--output", "{tmp}/out.csv"],
     "error: [Errno 2] No such file or directory: '{tmp}/none.json'"),
])
def test_a_mistake_is_one_error_line(tmp_path, script, argv, message):
    proc = run(script, *[item.format(tmp=tmp_path) for item in argv])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == message.format(tmp=tmp_path)


def test_train_net_debug_shows_the_traceback(tmp_path):
    proc = run("train_net.py", "--debug", "--config-file", str(tmp_path / "none.yaml"))
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
