"""Top-1 accuracy overall and on many/medium/few-shot classes, for h and h'."""
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .data.profile import SHOT_NAMES, shot_groups
from .inference import batch_outputs
from .utils import all_reduce_sum

__all__ = ["split_accuracy", "evaluate"]


def split_accuracy(correct_per_class: Sequence[float], total_per_class: Sequence[float],
                   class_counts: Sequence[int], many_threshold: int = 100,
                   few_threshold: int = 20) -> Dict[str, Optional[float]]:
    """{"top1", "many", "medium", "few"} in percent.

    top1 is over all test images; a shot split is the mean per-class accuracy of
    its classes (as in OLTR/LDA), None when the split has no class.
    """
    correct = np.asarray(correct_per_class, dtype=np.float64)
    total = np.asarray(total_per_class, dtype=np.float64)
    if total.sum() == 0:
        raise ValueError("evaluation set is empty")
    per_class = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    groups = shot_groups(class_counts, many_threshold, few_threshold)
    result = {"top1": float(100.0 * correct.sum() / total.sum())}
    for group, name in enumerate(SHOT_NAMES):
        members = (groups == group) & (total > 0)
        result[name] = float(100.0 * per_class[members].mean()) if members.any() else None
    return result


@torch.no_grad()
def evaluate(model, loader, preprocess, class_counts: Sequence[int], device: torch.device,
             autocast_dtype: Optional[torch.dtype] = None, channels_last: bool = False,
             many_threshold: int = 100, few_threshold: int = 20, progress=None) -> Dict[str, Optional[dict]]:
    """Evaluate ``model`` on ``loader``; under torch.distributed each rank sees a shard
    and the per-class counts are summed, so the result is exact and identical on all ranks.

    Returns {"balanced": split_accuracy of h, "unbalanced": that of h' or None}.
    """
    num_classes = len(class_counts)
    # Rows: images per class, correct of h, correct of h'. Counted per batch: no logits are kept.
    counts = torch.zeros(3, num_classes, dtype=torch.float64, device=device)
    has_unbalanced = False
    batches = progress(loader) if progress else loader
    for outputs, targets in batch_outputs(model, batches, preprocess, device, autocast_dtype, channels_last):
        ones = torch.ones_like(targets, dtype=torch.float64)
        counts[0].index_add_(0, targets, ones)
        counts[1].index_add_(0, targets, (outputs["logits"].argmax(1) == targets).double())
        if "unbalanced_logits" in outputs:
            has_unbalanced = True
            counts[2].index_add_(0, targets, (outputs["unbalanced_logits"].argmax(1) == targets).double())
    counts = all_reduce_sum(counts).cpu().numpy()
    result = {"balanced": split_accuracy(counts[1], counts[0], class_counts, many_threshold, few_threshold),
              "unbalanced": None}
    if has_unbalanced:
        result["unbalanced"] = split_accuracy(counts[2], counts[0], class_counts, many_threshold, few_threshold)
    return result
