"""The output directory of one run: who may write it, and what --resume may continue.

One run per directory at a time: ``run_dir_lock`` holds an advisory lock (fcntl.flock) on
``<dir>/run.lock`` for the run's life; a second start fails at once, naming the directory and
the holder's pid (the lock goes with the process, so a killed run never leaves it held). Under
the lock no other writer is alive, so temporaries of atomic writes still there (``lda_common.atomic_files.is_temporary``)
are a killed run's and are removed, and a partial last line of metrics.jsonl (a kill during an
append) is dropped before a resumed run appends to it.

``--resume`` continues a run only with the settings it was started with: the config saved in
last_checkpoint.pth is compared key by key with the resumed run's, and any difference outside
``RESUMABLE_KEYS`` is refused, naming the keys, before anything in the directory is written. The
number of processes (world size) is stored in the checkpoint too: it changes the data order
and the BatchNorm statistics, so a change is refused unless ``--allow-world-size-change``,
and then recorded in results.json ("world_size_changes").
"""
import contextlib
import fcntl
import os
from typing import Any, Dict, Iterator, List, Optional

from lda_common.atomic_files import is_temporary
from lda_common.config_keys import flatten_config

__all__ = ["RESUMABLE_KEYS", "LOCK_FILE", "LAST_CHECKPOINT", "BEST_CHECKPOINT", "DEPLOY_WEIGHTS", "ResumeRefused", "RunDirBusy", "config_changes", "read_resume_checkpoint",
           "saved_world_size", "environment_world_size", "world_size_change", "run_dir_lock",
           "remove_stale_temporaries", "drop_partial_last_line"]

LOCK_FILE = "run.lock"
# The checkpoints of a run (lda_cls/engine.py): everything --resume needs, the selected weights
# (lda_cls/hooks/evaluation.py), and the backbone + h of those for deployment.
LAST_CHECKPOINT = "last_checkpoint.pth"
BEST_CHECKPOINT = "model_best.pth"
DEPLOY_WEIGHTS = "model_deploy.pth"

# What a resumed run may change: how often it logs, evaluates and checkpoints, its CPU threads, how long a
# collective waits, where it stops this time, and the directory's own path (a moved run). None of them changes the weights an
# epoch computes (every epoch reseeds itself, see Trainer.train), so the result stays the uninterrupted run's.
RESUMABLE_KEYS = ("LOG_PERIOD", "CHECKPOINT_PERIOD", "TEST.EVAL_PERIOD", "NUM_THREADS", "SOLVER.STOP_EPOCH",
                  "OUTPUT_DIR", "DIST_TIMEOUT_S", "DATASET.CHECK_EVAL_IMAGES")

_ABSENT = object()


class ResumeRefused(ValueError):
    """--resume was asked to continue a run with other settings than it was started with."""


class RunDirBusy(RuntimeError):
    """Another process holds the output directory's lock."""

    user_error = True  # lda_common.cli prints the message alone


def _show(value) -> str:
    if value is _ABSENT:
        return "(not a key)"
    text = repr(value)
    # Paths and names in full (they are what differs); long lists (e.g. DECOUPLE.TAU_GRID) cut short.
    return text if isinstance(value, str) or len(text) <= 60 else text[:57] + "..."


def config_changes(saved_dump: str, cfg) -> List[str]:
    """"KEY old -> new" for every key outside RESUMABLE_KEYS that differs between the saved config (a
    ``cfg.dump()`` string) and ``cfg``. A key added to lda_cls since the checkpoint was written counts as
    its default there: new keys default to the behaviour before them."""
    from fvcore.common.config import CfgNode

    from .config import get_cfg

    # Through YAML and back, as the saved config was written: tuples read as lists on every side.
    saved, now, defaults = (flatten_config(CfgNode.load_cfg(dump)) for dump in (saved_dump, cfg.dump(), get_cfg().dump()))
    changes = []
    for key in sorted(set(saved) | set(now)):
        if key in RESUMABLE_KEYS:
            continue
        old = saved.get(key, defaults.get(key, _ABSENT))
        new = now.get(key, _ABSENT)
        if old != new:
            changes.append(f"{key} {_show(old)} -> {_show(new)}")
    return changes


def saved_world_size(state: dict) -> int:
    """The processes that wrote a checkpoint; older checkpoints tell it by their per-rank RNG states."""
    if "world_size" in state:
        return int(state["world_size"])
    return len(state.get("rng", [None]))


def environment_world_size() -> int:
    """The world size torchrun announces, readable before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _check_config(state: dict, cfg, path: str) -> None:
    if not isinstance(state, dict) or not isinstance(state.get("cfg"), str):
        raise ResumeRefused(f"--resume: {path} holds no saved config to compare with (not a last_checkpoint.pth "
                            f"of lda_cls.train?); start afresh with --overwrite")
    changes = config_changes(state["cfg"], cfg)
    if changes:
        raise ResumeRefused(
            f"--resume: {path} does not fit this config (changed since it was written: {', '.join(changes)}); "
            f"resume with the run's own settings (its config.yaml and command line) or start afresh with "
            f"--overwrite; only {', '.join(RESUMABLE_KEYS)} may change on resume")


def _check_world_size(state: dict, path: str, world_size: int, allow_change: bool) -> None:
    saved = saved_world_size(state)
    if saved != world_size and not allow_change:
        raise ResumeRefused(
            f"--resume: {path} was written by {saved} process(es), this run has {world_size}: the global batch "
            f"stays SOLVER.BATCH_SIZE, but the data order and the BatchNorm statistics differ from the "
            f"uninterrupted run; pass --allow-world-size-change to continue anyway (results.json records it)")


def read_resume_checkpoint(path: str, cfg, world_size: int, allow_world_size_change: bool = False,
                           read=None) -> dict:
    """The state of ``path`` (last_checkpoint.pth) if this run may continue it, else ResumeRefused naming why.

    Reads only: a refusal leaves the directory as it was. ``read`` loads the file (default:
    ``lda_common.checkpoint_io.load_checkpoint`` on the CPU).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no {os.path.basename(path)} in {os.path.dirname(path) or '.'}")
    if read is None:
        from lda_common.checkpoint_io import load_checkpoint as read
    state = read(path)
    _check_config(state, cfg, path)
    _check_world_size(state, path, world_size, allow_world_size_change)
    return state


def world_size_change(state: dict, world_size: int, epoch: int) -> Optional[dict]:
    """The record of a resume under another world size (None when it is the same)."""
    saved = saved_world_size(state)
    return None if saved == world_size else {"epoch": int(epoch), "from": saved, "to": int(world_size)}


@contextlib.contextmanager
def run_dir_lock(output_dir: str) -> Iterator[str]:
    """Hold ``<output_dir>/run.lock`` (created with the directory if need be) while the block runs.

    Raises RunDirBusy at once (no waiting) if another process holds it. The file stays, empty while
    no one holds it: deleting a lock file lets two processes lock two different files of one name.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: held elsewhere
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirBusy(f"{output_dir} is in use by another run (pid {holder} holds {path}): wait for it to end "
                         f"or pass another --output-dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield path
    finally:
        handle.seek(0)
        handle.truncate()
        handle.close()  # releases the lock


def remove_stale_temporaries(output_dir: str) -> List[str]:
    """Delete the temporaries of atomic writes in ``output_dir``; call it holding the lock (then they are
    a killed run's). Returns the names removed."""
    if not os.path.isdir(output_dir):
        return []
    removed = sorted(entry.name for entry in os.scandir(output_dir) if entry.is_file() and is_temporary(entry.name))
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    return removed


def drop_partial_last_line(path: str) -> Optional[str]:
    """Truncate a JSONL file after its last newline; returns the dropped text (None if the file ends whole).

    Each record is appended as one line with its newline, so text after the last newline is a record
    cut off by a kill; appending to it would glue the next record onto it and break both.
    """
    if not os.path.isfile(path):
        return None
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return None
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return None
        chunk, end = 1 << 16, size
        while True:  # find the last newline, reading backwards
            start = max(0, end - chunk)
            handle.seek(start)
            block = handle.read(end - start)
            index = block.rfind(b"\n")
            if index >= 0 or start == 0:
                keep = start + index + 1 if index >= 0 else 0
                break
            end = start
        handle.seek(keep)
        dropped = handle.read()
        handle.truncate(keep)
    return dropped.decode("utf-8", errors="replace")
