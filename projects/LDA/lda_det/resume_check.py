"""``train_net.py --resume`` continues a run only with the settings it was started with.

detectron2's ``default_setup`` overwrites ``OUTPUT_DIR/config.yaml`` and ``resume_or_load`` takes the model,
optimizer and iteration from the last checkpoint whatever the new config says, so a changed config would
silently make a hybrid run (another head fails only inside the optimizer, after config.yaml is gone). This
check runs before ``default_setup``: a changed key outside ``RESUMABLE_KEYS`` is refused by name and nothing
in the directory is written.

The world size may change: detectron2's ``SOLVER.IMS_PER_BATCH`` is the global batch, so the schedule and
the batch stay those of the run (the data order differs).
"""
import os
from typing import Any, Dict, List

from detectron2.config import CfgNode

from lda_common.config_keys import flatten_config

__all__ = ["RESUMABLE_KEYS", "ResumeRefused", "resume_config_changes", "check_resume_config"]

# What a resumed run may change: how often it logs, evaluates and checkpoints, its data-loading workers,
# the directory's own path, and MODEL.WEIGHTS (a resumed run loads its last checkpoint, not these weights).
RESUMABLE_KEYS = ("SOLVER.CHECKPOINT_PERIOD", "TEST.EVAL_PERIOD", "DATALOADER.NUM_WORKERS", "OUTPUT_DIR",
                  "MODEL.WEIGHTS", "VIS_PERIOD")


class ResumeRefused(ValueError):
    """--resume was asked to continue a run with other settings than it was started with."""


def _resumable(key: str) -> bool:
    return key in RESUMABLE_KEYS or key.endswith("LOG_PERIOD")


def resume_config_changes(saved: CfgNode, cfg: CfgNode) -> List[str]:
    """"KEY old -> new" for every key outside RESUMABLE_KEYS (and the log periods) that differs."""
    # Through YAML and back, as config.yaml was written: tuples (nested too) read as lists on both sides.
    old, new = (flatten_config(CfgNode.load_cfg(node.dump())) for node in (saved, cfg))
    return [f"{key} {old.get(key, '(not a key)')!r} -> {new.get(key, '(not a key)')!r}"
            for key in sorted(set(old) | set(new)) if not _resumable(key) and old.get(key) != new.get(key)]


def check_resume_config(cfg: CfgNode) -> None:
    """Refuse ``--resume`` into ``cfg.OUTPUT_DIR`` when its checkpoint was trained with another config.
    Nothing to check without a checkpoint (detectron2 then starts afresh) or without its config.yaml."""
    output_dir = cfg.OUTPUT_DIR
    saved_path = os.path.join(output_dir, "config.yaml")
    if not (os.path.isfile(os.path.join(output_dir, "last_checkpoint")) and os.path.isfile(saved_path)):
        return
    with open(saved_path) as handle:
        saved = CfgNode.load_cfg(handle)
    changes = resume_config_changes(saved, cfg)
    if changes:
        raise ResumeRefused(
            f"--resume: {output_dir} was trained with another config (changed: {', '.join(changes)}); resume "
            f"with the run's own config ({saved_path}) or use another OUTPUT_DIR; only "
            f"{', '.join(RESUMABLE_KEYS)} and the LOG_PERIOD keys may change on resume")
