"""LDA (Peng et al. 2021, Eq. 9) and its ablations (paper Table 5, Fig. 5 / 6a), all on lda_core.LDALoss.

* ``lda``: R_s(h') + alpha R_u(h) + beta (intra + inter) on the projection p(x).
* ``lda_em_only``: E.M only, the two risks with alpha (beta 0, no projection head).
* ``lda_em_dm``: E.M + D.M without the projection: intra / inter on the pooled backbone features.
* ``lda_fixed_alpha``: a constant alpha instead of Eq. 6 (one point of the grid, LDA.FIXED_ALPHA).
* ``lda_h_prime_only``: h' alone, i.e. the source risk R_s plus D.M on one classifier (no balanced
  h, no alpha); it is tested with that classifier. Differences between the ablations are configuration
  (configs/cls/methods/lda_*.yaml) except this one, whose model has one classifier.

Variants (not in the paper; each a hypothesis about why LDA trails Balanced Softmax, every
value fixed by its derivation, none chosen on data):

* ``lda_la``: R_u(h) by logit adjustment, CE(h(x) + log p_s(y)) (Menon et al. 2021), instead of
  importance weights; alpha, scaling and factors as ``lda``.
* ``lda_la_fixed_alpha``: ``lda_la`` with a balanced coefficient that does not anneal: the
  normalised risks R_s(h') + R_u(h) at equal weight throughout (alpha 1, factor 1).
* ``balanced_softmax_dm``: Balanced Softmax on the single classifier h plus beta (intra + inter)
  on the projection p(x): LDA's divergence terms without h' and alpha.
"""
from typing import Dict

import torch
from torch import nn

from lda_core import LDALoss, global_class_divergence
from lda_core.divergence import at_least_float32

from .base import Method, register_method
from .logit_adjust import log_prior

__all__ = ["LDACriterion", "SourceRiskWithDivergence", "BalancedSoftmaxWithDivergence", "LDA", "LDAHPrimeOnly",
           "BalancedSoftmaxDM", "DIVERGENCE_FEATURES"]

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
            scaling=lda.SCALING, balanced_risk=lda.BALANCED_RISK)

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
        intra, inter = global_class_divergence(outputs["features"].float(), targets, margin=self.margin)
        return {"loss": loss_unbalanced + self.beta * (intra + inter), "loss_unbalanced": loss_unbalanced.detach(),
                "loss_intra": intra.detach(), "loss_inter": inter.detach()}


class BalancedSoftmaxWithDivergence(nn.Module):
    """CE(h(x) + log p_s(y)) (Ren et al. 2020, Eq. 4) + beta (intra + inter) on p(x) (Eq. 7, 8).

    Under DDP both terms are those of one process on the global batch: the first is a batch mean
    (equal batches per rank, so DDP's gradient averaging gives the global mean's gradient), the
    divergence uses the class centres of the all-gathered projections (lda_core's global batch).
    """

    def __init__(self, class_counts, beta: float, margin: float):
        super().__init__()
        self.beta = float(beta)
        self.margin = float(margin)
        self.register_buffer("log_prior", log_prior(class_counts), persistent=False)

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = at_least_float32(outputs["logits"])
        loss_balanced = nn.functional.cross_entropy(logits + self.log_prior.to(logits.dtype), targets)
        intra, inter = global_class_divergence(at_least_float32(outputs["projection"]), targets, margin=self.margin)
        return {"loss": loss_balanced + self.beta * (intra + inter), "loss_balanced": loss_balanced.detach(),
                "loss_intra": intra.detach(), "loss_inter": inter.detach()}


@register_method("lda", "lda_em_only", "lda_em_dm", "lda_fixed_alpha", "lda_la", "lda_la_fixed_alpha")
class LDA(Method):
    head_layout = "lda"

    def build_criterion(self) -> nn.Module:
        return LDACriterion(self.cfg, self.class_counts)


@register_method("lda_h_prime_only")
class LDAHPrimeOnly(Method):
    def build_criterion(self) -> nn.Module:
        return SourceRiskWithDivergence(self.cfg.LDA.BETA, self.cfg.LDA.MARGIN)


@register_method("balanced_softmax_dm")
class BalancedSoftmaxDM(Method):
    head_layout = "projection"

    def build_criterion(self) -> nn.Module:
        return BalancedSoftmaxWithDivergence(self.class_counts, self.cfg.LDA.BETA, self.cfg.LDA.MARGIN)
