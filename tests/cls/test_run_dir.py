"""One run per output directory: the lock, a killed run's temporaries removed, --eval-only's own record, a cut-off
JSONL line (the temporaries themselves: tests/common/test_atomic_files.py)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lda_cls.run_dir import LOCK_FILE, RunDirBusy, drop_partial_last_line, remove_stale_temporaries
from lda_cls.train import main
from lda_common.atomic_files import temporary_path

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
TWO_EPOCHS = ["SOLVER.EPOCHS", "2", "SOLVER.BATCH_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "4",
              "NUM_THREADS", "1"]
# A process that holds a directory's lock until its stdin closes (as a training run would, for its life).
HOLDER = ("import sys; from lda_cls.run_dir import run_dir_lock\n"
          "with run_dir_lock(sys.argv[1]):\n    print('locked', flush=True); sys.stdin.read()")


def stopped_run(directory):
    assert main(["--output-dir", str(directory), *TWO_EPOCHS, "SOLVER.STOP_EPOCH", "1"]) is None
    return directory


def test_a_second_run_in_a_locked_directory_fails_at_once_naming_the_dir_and_the_pid(tmp_path):
    output = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(RunDirBusy) as busy:
            main(["--output-dir", str(output), *TWO_EPOCHS])
        assert time.monotonic() - start < 5  # no waiting for the lock
        assert str(busy.value) == (f"{output} is in use by another run (pid {holder.pid} holds {output / LOCK_FILE}): "
                                   f"wait for it to end or pass another --output-dir")
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):  # --eval-only writes there too
            main(["--output-dir", str(output), "--eval-only", "--weights", str(output / "x.pth")])
        assert sorted(os.listdir(output)) == [LOCK_FILE]  # nothing written, nothing deleted
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # The lock went with its holder: now the run starts (and releases it at its end, for the next one).
    assert main(["--output-dir", str(output), *TWO_EPOCHS, "SOLVER.EPOCHS", "1"])["selected_epoch"] == 1
    assert (output / LOCK_FILE).read_text() == ""
    main(["--output-dir", str(output), "--overwrite", *TWO_EPOCHS, "SOLVER.EPOCHS", "1"])


def test_stale_temporaries_are_removed_at_start(tmp_path):
    run = stopped_run(tmp_path / "run")
    stale = [os.path.basename(temporary_path(str(run / name))) for name in ("last_checkpoint.pth", "results.json")]
    for name in stale:
        (run / name).write_bytes(b"half a file")
    (run / "notes.tmp").write_text("mine")
    main(["--output-dir", str(run), "--resume", *TWO_EPOCHS])
    assert not any((run / name).exists() for name in stale) and (run / "notes.tmp").read_text() == "mine"
    assert f"removed temporary files a killed run left in {run}: {', '.join(sorted(stale))}" in \
        (run / "log.txt").read_text()
    assert remove_stale_temporaries(str(tmp_path / "absent")) == []


def test_eval_only_writes_its_own_record_and_leaves_a_training_runs_files(tmp_path):
    run = stopped_run(tmp_path / "run")
    before = {name: (run / name).read_bytes() for name in ("metrics.jsonl", "log.txt", "config.yaml")}
    result = main(["--output-dir", str(run), "--eval-only", "--weights", str(run / "model_best.pth")])
    assert {name: (run / name).read_bytes() for name in before} == before
    record = json.loads((run / "eval_results.json").read_text())
    assert record["balanced"] == result["balanced"] and record["weights"] == str(run / "model_best.pth")
    fresh = tmp_path / "eval"
    main(["--output-dir", str(fresh), "--eval-only", "--weights", str(run / "model_best.pth")])
    assert sorted(os.listdir(fresh)) == ["eval_results.json", LOCK_FILE]


def test_a_record_cut_off_by_a_kill_is_dropped_before_the_resumed_run_appends(tmp_path):
    run = stopped_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"type": "train", "epoch": 2, "iter": 2')  # the kill came mid-append
    main(["--output-dir", str(run), "--resume", *TWO_EPOCHS])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iter"] for r in records if r["type"] == "train"]
    assert iters == sorted(iters) and len(iters) == len(set(iters)) and iters[-1] == 52
    assert (f"{run / 'metrics.jsonl'}: dropped a partial last line of 39 characters, a record cut off when the run "
            f"was killed: '{{\"type\": \"train\", \"epoch\": 2, \"iter\": 2'") in (run / "log.txt").read_text()


def test_drop_partial_last_line_cases(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n')
    assert drop_partial_last_line(str(path)) is None and path.read_text() == '{"a": 1}\n{"b": 2}\n'
    path.write_text('{"a": 1}\n' + "x" * 200_000)  # longer than one backwards read
    assert drop_partial_last_line(str(path)) == "x" * 200_000 and path.read_text() == '{"a": 1}\n'
    path.write_text('{"a"')
    assert drop_partial_last_line(str(path)) == '{"a"' and path.read_text() == ""
    assert drop_partial_last_line(str(path)) is None and drop_partial_last_line(str(tmp_path / "none")) is None
