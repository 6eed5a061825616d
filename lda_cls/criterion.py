"""Adapters from the model's output dict to the loss: LDA (lda_core) or plain cross entropy."""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lda_core import LDALoss

__all__ = ["LDACriterion", "CrossEntropyCriterion", "build_criterion"]


class LDACriterion(nn.Module):
    """Eq. 9: R_s(h') + alpha R_u(h) + beta (intra + inter), on the head's outputs."""

    def __init__(self, cfg, class_counts: Sequence[int]):
        super().__init__()
        lda = cfg.LDA
        self.lda_loss = LDALoss(
            class_counts, gamma=lda.GAMMA, beta=lda.BETA, margin=lda.MARGIN, window=lda.WINDOW,
            unbalanced_factor=lda.UNBALANCED_FACTOR, balanced_factor=lda.BALANCED_FACTOR,
            weighted_inter=lda.WEIGHTED_INTER, fixed_alpha=lda.FIXED_ALPHA if lda.FIXED_ALPHA >= 0 else None,
            scaling=lda.SCALING)

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.lda_loss(outputs["unbalanced_logits"], outputs["logits"], targets,
                             features=outputs.get("projection"))


class CrossEntropyCriterion(nn.Module):
    """The baseline: cross entropy of the single classifier h."""

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(outputs["logits"].float(), targets)}


def build_criterion(cfg, class_counts: Sequence[int]) -> nn.Module:
    return LDACriterion(cfg, class_counts) if cfg.METHOD == "lda" else CrossEntropyCriterion()
