"""Cross-entropy family: CE, RW (1/n_y weights), Focal, CB-Focal; CE-DRW and CE-DRS are CE plus a hook.

Every loss here is a weighted mean over the batch, sum_i w_{y_i} l_i / sum_i w_{y_i}, with
per-class weights w_y (all 1 unless REWEIGHT says otherwise); this is PyTorch's
``F.cross_entropy(weight=...)``, which Cao et al.'s DRW code uses. The weights are a buffer that
lda_cls/hooks.py sets (from epoch 0 for RW / CB, from REWEIGHT.START_EPOCH for DRW).
"""
from typing import Dict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lda_core.distributed import world_size

from .base import Method, register_method

__all__ = ["ClassWeightedLoss", "CrossEntropyLoss", "FocalLoss", "CrossEntropy", "Focal"]


class ClassWeightedLoss(nn.Module):
    """Base of the single-classifier losses: ``per_sample(logits, targets)`` averaged with weights w_y."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.register_buffer("class_weights", torch.ones(num_classes))

    def set_class_weights(self, weights: torch.Tensor) -> None:
        self.class_weights.copy_(weights.to(self.class_weights))

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        weights = self.class_weights[targets]
        weighted_sum = (weights * self.per_sample(outputs["logits"].float(), targets)).sum()
        total_weight = weights.sum().detach()
        ranks = world_size()
        if ranks > 1:
            # The global batch's weighted mean: the denominator over all ranks (an all-reduce, no host sync),
            # times the number of ranks, which DDP's gradient averaging divides out again.
            dist.all_reduce(total_weight)
            weighted_sum = weighted_sum * ranks
        return {"loss": weighted_sum / total_weight}


class CrossEntropyLoss(ClassWeightedLoss):
    def per_sample(self, logits, targets):
        return F.cross_entropy(logits, targets, reduction="none")


class FocalLoss(ClassWeightedLoss):
    """Softmax focal loss -(1 - p_y)^gamma log p_y (Lin et al. 2017; the form of Cao et al.'s baseline)."""

    def __init__(self, num_classes: int, gamma: float):
        super().__init__(num_classes)
        if gamma < 0:
            raise ValueError(f"LOSS.FOCAL_GAMMA must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def per_sample(self, logits, targets):
        cross_entropy = F.cross_entropy(logits, targets, reduction="none")
        p_target = torch.exp(-cross_entropy)
        return (1.0 - p_target).pow(self.gamma) * cross_entropy

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


@register_method("ce", "rw", "ce_drw", "ce_drs")
class CrossEntropy(Method):
    """CE; RW = CE with REWEIGHT.TYPE inverse; CE-DRW / CE-DRS = CE with a deferred weight / sampler switch."""

    def build_criterion(self) -> nn.Module:
        return CrossEntropyLoss(self.num_classes)


@register_method("focal", "cb_focal")
class Focal(Method):
    """Focal; CB-Focal = Focal with REWEIGHT.TYPE effective from epoch 0 (Cui et al. 2019)."""

    def build_criterion(self) -> nn.Module:
        return FocalLoss(self.num_classes, self.cfg.LOSS.FOCAL_GAMMA)
