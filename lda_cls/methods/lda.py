"""LDA (Peng et al. 2021, Eq. 9) and its ablations (paper Table 5, Fig. 5 / 6a), all on lda_core.LDALoss.

* ``lda``: R_s(h') + alpha R_u(h) + beta (intra + inter) on the projection p(x).
* ``lda_em_only``: E.M only, the two risks with alpha (beta 0, no projection head).
* ``lda_em_dm``: E.M + D.M without the projection: intra / inter on the pooled backbone features.
* ``lda_fixed_alpha``: a constant alpha instead of Eq. 6 (one point of the grid, LDA.FIXED_ALPHA).
* ``lda_h_prime_only``: h' alone, i.e. the source risk R_s plus D.M on one classifier (no balanced
  h, no alpha); it is tested with that classifier. Differences between the ablations are configuration
  (configs/cls/methods/lda_*.yaml) except this one, whose model has one classifier.
"""
from typing import Dict

import torch
from torch import nn

from lda_core import LDALoss, class_divergence

from .base import Method, register_method

__all__ = ["LDACriterion", "SourceRiskWithDivergence", "LDA", "LDAHPrimeOnly", "DIVERGENCE_FEATURES"]

DIVERGENCE_FEATURES = ("projection", "backbone")


def _divergence_input(cfg) -> str:
    where = cfg.LDA.DIVERGENCE_FEATURES
    if where not in DIVERGENCE_FEATURES:
        raise ValueError(f"LDA.DIVERGENCE_FEATURES must be one of {DIVERGENCE_FEATURES}, got {where!r}")
    return "projection" if where == "projection" else "features"


class LDACriterion(nn.Module):
    """Eq. 9: R_s(h') + alpha R_u(h) + beta (intra + inter), on the head's outputs."""

    def __init__(self, cfg, class_counts):
        super().__init__()
        lda = cfg.LDA
        self.divergence_input = _divergence_input(cfg)
        self.lda_loss = LDALoss(
            class_counts, gamma=lda.GAMMA, beta=lda.BETA, margin=lda.MARGIN, window=lda.WINDOW,
            unbalanced_factor=lda.UNBALANCED_FACTOR, balanced_factor=lda.BALANCED_FACTOR,
            weighted_inter=lda.WEIGHTED_INTER, fixed_alpha=lda.FIXED_ALPHA if lda.FIXED_ALPHA >= 0 else None,
            scaling=lda.SCALING)

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        # "projection" is absent when p is disabled: then D.M is off unless it acts on backbone features.
        return self.lda_loss(outputs["unbalanced_logits"], outputs["logits"], targets,
                             features=outputs.get(self.divergence_input))


class SourceRiskWithDivergence(nn.Module):
    """R_s of the single classifier + beta (intra + inter) on the backbone features (Eq. 5, 7, 8)."""

    def __init__(self, beta: float, margin: float):
        super().__init__()
        self.beta = float(beta)
        self.margin = float(margin)

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        loss_unbalanced = nn.functional.cross_entropy(outputs["logits"].float(), targets)
        intra, inter = class_divergence(outputs["features"].float(), targets, margin=self.margin)
        return {"loss": loss_unbalanced + self.beta * (intra + inter), "loss_unbalanced": loss_unbalanced.detach(),
                "loss_intra": intra.detach(), "loss_inter": inter.detach()}


@register_method("lda", "lda_em_only", "lda_em_dm", "lda_fixed_alpha")
class LDA(Method):
    lda_head = True

    def build_criterion(self) -> nn.Module:
        return LDACriterion(self.cfg, self.class_counts)


@register_method("lda_h_prime_only")
class LDAHPrimeOnly(Method):
    def build_criterion(self) -> nn.Module:
        return SourceRiskWithDivergence(self.cfg.LDA.BETA, self.cfg.LDA.MARGIN)
