"""A stopped rank makes the others fail within DIST_TIMEOUT_S, with one line naming the rank and the collective."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lda_cls.utils import collective_failure

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]


def _pids_with(marker, rank):
    """Processes whose environment holds ``marker`` and RANK=rank (torchrun's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ and f"RANK={rank}".encode() in environ:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the worker through /proc")
def test_a_stopped_rank_ends_the_run_within_the_timeout_naming_rank_and_collective(tmp_path):
    marker = f"LDA_TIMEOUT_TEST={uuid.uuid4().hex}"
    env = dict(os.environ, OMP_NUM_THREADS="1", LDA_TIMEOUT_TEST=marker.split("=", 1)[1])
    port = free_port()
    output = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "lda_cls.train", "--output-dir", str(output), "SOLVER.EPOCHS", "50", "DIST_TIMEOUT_S", "30"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = []
    try:
        deadline = time.time() + 300
        while not (output / "metrics.jsonl").exists():  # training has started on both ranks
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        stopped = _pids_with(marker, 1)
        assert stopped, "rank 1 not found"
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        started = time.time()
        _, stderr = proc.communicate(timeout=240)
        elapsed = time.time() - started
    finally:
        for pid in stopped:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "error: rank 0 of 2: " in stderr and "failed (DIST_TIMEOUT_S 30 s): another rank stopped" in stderr, \
        stderr[-3000:]
    assert "torch.distributed " in stderr or "backward" in stderr
    # 30 s for rank 0 (it also bounds the rendezvous: a loaded machine needs slack there), then torchrun's
    # own grace period before it kills rank 1.
    assert elapsed < 180


def test_an_error_outside_a_process_group_is_not_a_collective_failure():
    assert collective_failure(RuntimeError("Timed out waiting 5000ms for recv operation"), 5) is None
