"""Logit adjustment by the training prior pi_y = n_y / N.

* Balanced Softmax (Ren et al. 2020, Eq. 4): CE of softmax(z + log n_y); the prior shift's log N
  cancels in the softmax, so it is the logit-adjusted loss below with tau = 1.
* Logit-adjusted loss (Menon et al. 2021, Eq. 10): CE of softmax(z + tau log pi_y), tau = 1 on CIFAR-LT.
* Post-hoc logit adjustment (Menon et al. 2021, Eq. 3): a trained CE model, predicted with
  z - tau log pi_y; nothing trains (SOLVER.EPOCHS 0), the stage-1 weights come from --weights.
"""
import math

import torch
import torch.nn.functional as F

from .base import Method, register_method
from .ce import ClassWeightedLoss
from .decoupling import TwoStageMethod

__all__ = ["LogitAdjustedLoss", "LogitAdjusted", "PosthocLogitAdjustment", "log_prior"]


def log_prior(class_counts) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64).clamp(min=1)
    return (counts / counts.sum()).log().float()


class LogitAdjustedLoss(ClassWeightedLoss):
    def __init__(self, class_counts, tau: float = 1.0):
        super().__init__(len(class_counts))
        if not math.isfinite(tau):
            raise ValueError(f"LOSS.LOGIT_ADJUST_TAU must be finite, got {tau}")
        self.register_buffer("shift", tau * log_prior(class_counts))

    def per_sample(self, logits, targets):
        return F.cross_entropy(logits + self.shift, targets, reduction="none")


@register_method("balanced_softmax", "logit_adjusted")
class LogitAdjusted(Method):
    def build_criterion(self):
        return LogitAdjustedLoss(self.class_counts, self.cfg.LOSS.LOGIT_ADJUST_TAU)


@register_method("posthoc_la")
class PosthocLogitAdjustment(TwoStageMethod):
    """Stage-1 weights as they are; the classifier subtracts tau log pi_y at evaluation."""

    classifier = "logit_adjusted"
    trains = False

    def setup_classifier(self, trainer) -> None:
        classifier = trainer.model.head.balanced
        classifier.log_prior.copy_(log_prior(self.class_counts))
        classifier.tau.fill_(self.cfg.LOSS.LOGIT_ADJUST_TAU)
        trainer.logger.info(f"post-hoc logit adjustment: tau {self.cfg.LOSS.LOGIT_ADJUST_TAU}, "
                            f"log prior {[round(v, 3) for v in classifier.log_prior.tolist()]}")
