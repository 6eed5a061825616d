"""The output directory of one run: what --resume may continue.

``--resume`` continues a run only with the settings it was started with: the config saved in
last_checkpoint.pth is compared key by key with the resumed run's, and any difference outside
``RESUMABLE_KEYS`` is refused, naming the keys, before anything in the directory is written. The
number of processes (world size) is stored in the checkpoint too: it changes the data order
and the BatchNorm statistics, so a change is refused unless ``--allow-world-size-change``,
and then recorded in results.json ("world_size_changes").
"""
import os
from typing import Any, Dict, List, Optional

__all__ = ["RESUMABLE_KEYS", "ResumeRefused", "config_changes", "read_resume_checkpoint", "saved_world_size",
           "environment_world_size"]

# What a resumed run may change: how often it logs, evaluates and checkpoints, its CPU threads, where it
# stops this time, and the directory's own path (a moved run). None of them changes the weights an
# epoch computes (every epoch reseeds itself, see Trainer.train), so the result stays the uninterrupted run's.
RESUMABLE_KEYS = ("LOG_PERIOD", "CHECKPOINT_PERIOD", "TEST.EVAL_PERIOD", "NUM_THREADS", "SOLVER.STOP_EPOCH",
                  "OUTPUT_DIR")

_ABSENT = object()


class ResumeRefused(ValueError):
    """--resume was asked to continue a run with other settings than it was started with."""


def _flatten(node, prefix: str = "") -> Dict[str, Any]:
    """{"SOLVER.BASE_LR": 0.05, ...} of a (nested) CfgNode or dict; tuples read as lists (YAML has no tuples)."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


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

    saved, now, defaults = _flatten(CfgNode.load_cfg(saved_dump)), _flatten(cfg), _flatten(get_cfg())
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
    ``lda_cls.checkpoint_io.load_checkpoint`` on the CPU).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no {os.path.basename(path)} in {os.path.dirname(path) or '.'}")
    if read is None:
        from .checkpoint_io import load_checkpoint as read
    state = read(path)
    _check_config(state, cfg, path)
    _check_world_size(state, path, world_size, allow_world_size_change)
    return state


def world_size_change(state: dict, world_size: int, epoch: int) -> Optional[dict]:
    """The record of a resume under another world size (None when it is the same)."""
    saved = saved_world_size(state)
    return None if saved == world_size else {"epoch": int(epoch), "from": saved, "to": int(world_size)}
