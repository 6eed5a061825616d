"""Training history of a run, read from its ``metrics.jsonl``.

One JSON object per line: ``{"type": "train", "epoch", "iter", "loss", ..., "alpha",
"delta_acc", "lr"}`` per logged step and ``{"type": "eval", "epoch", "split",
"balanced": {...}, "unbalanced": {...}}`` per evaluation.
"""
import json
import math
from typing import Dict, List, Optional

import numpy as np


def read_metrics(path: str) -> List[dict]:
    """All records of a JSON-lines file (lda_cls's ``metrics.jsonl``, detectron2's ``metrics.json``); a line
    that is not a JSON object is an error naming the file and the line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _epoch_positions(epochs: List[int], steps: Dict[int, List[dict]]) -> Dict[int, np.ndarray]:
    """Fractional epoch of every logged step; epochs count from 1, so epoch e spans (e - 1, e].

    lda_cls.train logs the global step as ``iter`` and always logs the last step
    of an epoch, so the last iter of a finished epoch e is e x (iterations per
    epoch). The iterations per epoch are the median of those ratios over the
    finished epochs (all but the last, which may still be running) and a step
    sits at iter / (iterations per epoch). Records without ``iter``: the k-th of
    the n steps of epoch e sits at e - 1 + k / n, k = 1..n.
    """
    have_iters = all("iter" in r for e in epochs for r in steps[e])
    finished = epochs[:-1] if len(epochs) > 1 else epochs
    ratios = [steps[e][-1]["iter"] / e for e in finished if e > 0] if have_iters else []
    per_epoch = float(np.median(ratios)) if ratios else 0.0
    positions = {}
    for epoch in epochs:
        records = steps[epoch]
        if per_epoch > 0:
            positions[epoch] = np.asarray([r["iter"] / per_epoch for r in records], dtype=np.float64)
        else:
            positions[epoch] = epoch - 1 + np.arange(1, len(records) + 1, dtype=np.float64) / len(records)
    return positions


def training_curve(records: List[dict]) -> Dict[str, np.ndarray]:
    """alpha, delta_acc (percentage points under the official scaling), balanced_coefficient (the
    effective coefficient of the normalised balanced risk, lda_core.LDALoss), loss and lr per logged step.

    ``epoch`` is fractional (see :func:`_epoch_positions`): the last step of
    epoch e is at e, matching the epochs of the evaluation records, and runs with
    different logging periods align. A resumed run that re-logs an epoch keeps
    only the last pass over it. Keys without a value in a record (e.g. alpha of
    a CE run) are NaN.
    """
    by_epoch: Dict[int, List[dict]] = {}
    for record in records:
        if record.get("type") != "train":
            continue
        epoch = int(record.get("epoch", 0))
        steps = by_epoch.setdefault(epoch, [])
        if steps and "iter" in record and "iter" in steps[-1] and record["iter"] <= steps[-1]["iter"]:
            steps.clear()  # the epoch restarted after a resume
        steps.append(record)
    epochs = sorted(by_epoch)
    positions = _epoch_positions(epochs, by_epoch)
    keys = ("alpha", "delta_acc", "balanced_coefficient", "loss", "lr")
    curve = {"epoch": np.concatenate([positions[e] for e in epochs]) if epochs else np.zeros(0)}
    for key in keys:
        curve[key] = np.asarray([_number(r.get(key)) for e in epochs for r in by_epoch[e]], dtype=np.float64)
    return curve


def eval_curve(records: List[dict], split: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Top-1 of h ("balanced") and h' ("unbalanced") per evaluation of ``split`` (any split if None;
    the last record of an epoch wins)."""
    per_epoch: Dict[int, dict] = {}
    for record in records:
        if record.get("type") == "eval" and (split is None or record.get("split") == split):
            per_epoch[int(record.get("epoch", 0))] = record
    epochs = sorted(per_epoch)
    out = {"epoch": np.asarray(epochs, dtype=np.float64)}
    for classifier in ("balanced", "unbalanced"):
        out[classifier] = np.asarray(
            [_number((per_epoch[e].get(classifier) or {}).get("top1")) for e in epochs], dtype=np.float64)
    return out
