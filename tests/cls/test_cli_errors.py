"""Every lda_cls command line prints a user's mistake as one line "error: ..." (exit status 1); the traceback
only with --debug or LDA_DEBUG=1 (lda_common/cli.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lda_common.cli import one_line, run_cli

REPO = Path(__file__).resolve().parents[2]


def run(*argv, **env):
    environment = {key: value for key, value in os.environ.items() if key != "LDA_DEBUG"}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=300)


def test_lda_cls_train_one_line_and_the_traceback_on_request(tmp_path):
    missing = tmp_path / "never_trained"
    plain = run("-m", "lda_cls.train", "--output-dir", str(missing), "--resume")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [f"error: --resume: no last_checkpoint.pth in {missing}"]
    for debug in (run("-m", "lda_cls.train", "--debug", "--output-dir", str(missing), "--resume"),
                  run("-m", "lda_cls.train", "--output-dir", str(missing), "--resume", LDA_DEBUG="1")):
        assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1] == f"FileNotFoundError: --resume: no last_checkpoint.pth in " \
                                                        f"{missing}"


def test_lda_cls_stats_and_analyze_one_line(tmp_path):
    stats = run("-m", "lda_cls.stats", "--dataset", "imagefolder_lt", "--data-root", str(tmp_path / "none"))
    assert stats.returncode == 1
    assert stats.stderr.strip().splitlines() == [f"error: imagefolder_lt root does not exist: {tmp_path / 'none'}"]
    analyze = run("-m", "lda_cls.analyze", str(tmp_path / "no_run"))
    assert analyze.returncode == 1
    assert analyze.stderr.strip().splitlines()[-1] == f"error: run directory not found: {tmp_path / 'no_run'}"
    assert "Traceback" not in analyze.stderr


def test_one_line_forms():
    assert one_line(KeyError("Non-existent config key: MODEL.X")) == "Non-existent config key: MODEL.X"
    assert one_line(ValueError("first\n  second\n")) == "first second"
    worker = RuntimeError("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call "
                          "last):\n  File \"x.py\", line 1, in f\nValueError: MODEL.WEIGHTS not found\n")
    assert one_line(worker) == "RuntimeError: ValueError: MODEL.WEIGHTS not found (unexpected; --debug or " \
                               "LDA_DEBUG=1 prints the traceback)"
    assert one_line(TypeError("bad")) == "TypeError: bad (unexpected; --debug or LDA_DEBUG=1 prints the traceback)"


def test_run_cli_exit_statuses(capsys, monkeypatch):
    monkeypatch.delenv("LDA_DEBUG", raising=False)

    def fails(argv):
        raise FileNotFoundError(f"weights file not found: {argv[0]}")

    with pytest.raises(SystemExit) as exited:
        run_cli(fails, ["w.pth"])
    assert exited.value.code == 1 and capsys.readouterr().err == "error: weights file not found: w.pth\n"
    with pytest.raises(FileNotFoundError):
        run_cli(fails, ["w.pth", "--debug"])
    with pytest.raises(SystemExit) as exited:
        run_cli(lambda argv: None, [])
    assert exited.value.code == 0
