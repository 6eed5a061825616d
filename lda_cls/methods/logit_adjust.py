"""Logit adjustment by the training prior pi_y = n_y / N.

* Balanced Softmax (Ren et al. 2020, Eq. 4): CE of softmax(z + log n_y); the prior shift's log N
  cancels in the softmax, so it is the logit-adjusted loss below with tau = 1.
* Logit-adjusted loss (Menon et al. 2021, Eq. 10): CE of softmax(z + tau log pi_y), tau = 1 on CIFAR-LT.
* Post-hoc logit adjustment (Menon et al. 2021, Eq. 3): a trained CE model, predicted with
  z - tau log pi_y; nothing trains (SOLVER.EPOCHS 0), the stage-1 weights come from --weights.

Against the authors' code: Ren et al.'s loss/BalancedSoftmaxLoss.py adds log n_y, Menon et al.'s
logit_adjustment/utils.py ``build_loss_fn`` log(pi_y^tau + 1e-12) and main.py subtracts the same at
test time; the 1e-12 moves a log prior of pi_y >= 1e-6 by at most 1e-6, below the float32 buffer's
rounding for the priors of the datasets here. Initialisation: ``balanced_softmax`` keeps nn.Linear's
default (Ren et al.'s models/DotProductClassifier.py is an nn.Linear); ``logit_adjusted`` starts h as
Menon et al.'s logit_adjustment/models.py ``fc10`` Dense: weight ~ N(0, 0.01^2), bias 0 (Keras'
default). ``posthoc_la`` adjusts whatever stage-1 run --weights names (its h: that run's).
"""
import math

import torch
import torch.nn.functional as F

from .base import Method, register_method
from .ce import ClassWeightedLoss
from .decoupling import TwoStageMethod

__all__ = ["LogitAdjustedLoss", "LogitAdjusted", "MenonLogitAdjusted", "PosthocLogitAdjustment", "log_prior",
           "init_like_menon"]


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


def init_like_menon(classifier: torch.nn.Module) -> None:
    """weight ~ N(0, 0.01^2), bias 0: Menon et al.'s logit_adjustment/models.py ``fc10`` (RandomNormal(stddev=0.01))."""
    with torch.no_grad():  # before --resume loads the checkpoint's values over it
        torch.nn.init.normal_(classifier.weight, std=0.01)
        if getattr(classifier, "bias", None) is not None:
            torch.nn.init.zeros_(classifier.bias)


@register_method("balanced_softmax")
class LogitAdjusted(Method):
    """CE(z + tau log pi_y); h keeps nn.Linear's default initialisation (Ren et al.'s nn.Linear)."""

    def build_criterion(self):
        return LogitAdjustedLoss(self.class_counts, self.cfg.LOSS.LOGIT_ADJUST_TAU)


@register_method("logit_adjusted")
class MenonLogitAdjusted(LogitAdjusted):
    """The logit-adjusted loss with h initialised as Menon et al.'s code (N(0, 0.01^2) weight, zero bias)."""

    def prepare(self, context) -> None:
        super().prepare(context)
        init_like_menon(context.model.head.balanced)


@register_method("posthoc_la")
class PosthocLogitAdjustment(TwoStageMethod):
    """Stage-1 weights as they are; the classifier subtracts tau log pi_y at evaluation."""

    classifier = "logit_adjusted"
    trains = False

    def setup_classifier(self, context) -> None:
        classifier = context.model.head.balanced
        classifier.log_prior.copy_(log_prior(self.class_counts))
        classifier.tau.fill_(self.cfg.LOSS.LOGIT_ADJUST_TAU)
        context.logger.info(f"post-hoc logit adjustment: tau {self.cfg.LOSS.LOGIT_ADJUST_TAU}, "
                            f"log prior {[round(v, 3) for v in classifier.log_prior.tolist()]}")
