"""Cross-entropy family: CE, RW (1/n_y weights), Focal, CB-Focal; CE-DRW and CE-DRS are CE plus a hook.

The softmax losses are a weighted mean over the batch, sum_i w_{y_i} l_i / sum_i w_{y_i}, with
per-class weights w_y (all 1 unless REWEIGHT says otherwise); this is PyTorch's
``F.cross_entropy(weight=...)``, which Cao et al.'s DRW code uses. The weights are a buffer that
lda_cls/hooks/schedules.py sets (from epoch 0 for RW / CB, from REWEIGHT.START_EPOCH for DRW).

CB-Focal is Cui et al.'s own loss (richardaecn/class-balanced-loss, src/cifar_main.py
``focal_loss`` and ``_tower_fn``; src/model_base.py ``_fully_connected``): the *sigmoid* focal
loss over all C binary columns, each sample's columns weighted by w_{y_i}, summed and divided by
the batch size (the number of positive labels), with the classifier's bias started at -log(C - 1)
(every class at p = 1 / C). One difference: Cui et al. exempt that bias from weight decay; here
it decays like every parameter.

Classifier initialisation. ``ce`` and ``rw`` keep nn.Linear's default (uniform, as the official LDA code's
``FC`` classifier, lib/net/network.py ``_get_classifer``). Cao et al.'s methods (``ce_drw``, ``ce_drs``,
``focal``) start h's weight as their code does: models/resnet_cifar.py ``ResNet_s`` applies
``_weights_init`` to every nn.Linear, ``init.kaiming_normal_(m.weight)`` (fan-in, ReLU gain, std
sqrt(2 / D)); the bias keeps nn.Linear's default, which ``_weights_init`` does not touch.
"""
import math
from typing import Dict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lda_core.divergence import at_least_float32

from ..utils import world_size
from .base import Method, register_method

__all__ = ["ClassWeightedLoss", "CrossEntropyLoss", "FocalLoss", "SigmoidFocalLoss", "CrossEntropy",
           "DeferredCrossEntropy", "Focal", "ClassBalancedFocal", "init_like_cao"]


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
    """Softmax focal loss -(1 - p_y)^gamma log p_y (Lin et al. 2017; the form of Cao et al.'s baseline).

    Without class weights (configs/cls/methods/focal.yaml) this is Cao et al.'s losses.py ``FocalLoss``
    exactly (batch mean). With weights w_y (no config sets them) the two differ: here the weighted mean
    sum w_y FL_i / sum w_y; theirs is mean_i (1 - e^{-w_y CE_i})^gamma w_y CE_i (the weight inside the
    modulator, a plain mean over the batch).
    """

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


class SigmoidFocalLoss(ClassWeightedLoss):
    """sum_i w_{y_i} sum_c (1 - p_ic)^gamma BCE(z_ic, [c == y_i]) / B, p_ic = sigmoid(z_ic) for c = y_i, else
    1 - sigmoid(z_ic) (Cui et al. 2019, Eq. 7-8; their cifar_main.py ``focal_loss``).

    The modulator is Cui et al.'s stable form exp(-gamma (t z + log(1 + e^{-z}))). Under DDP every rank
    holds B samples (drop_last), so each rank's sum / B, averaged by DDP, is the global sum / (ranks x B).
    """

    def __init__(self, num_classes: int, gamma: float):
        super().__init__(num_classes)
        if gamma < 0:
            raise ValueError(f"LOSS.FOCAL_GAMMA must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        logits = at_least_float32(outputs["logits"])
        labels = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        if self.gamma:
            bce = torch.exp(-self.gamma * (labels * logits + F.softplus(-logits))) * bce
        weighted = self.class_weights.to(logits.dtype)[targets].unsqueeze(1) * bce
        return {"loss": weighted.sum() / max(targets.shape[0], 1)}

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


def init_like_cao(classifier: nn.Module) -> None:
    """h's weight ~ N(0, 2 / D) (kaiming_normal_, fan-in): Cao et al.'s models/resnet_cifar.py ``_weights_init``."""
    weight = getattr(classifier, "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.dim() != 2:
        raise ValueError(f"Cao et al.'s initialisation draws a (C, D) weight; {type(classifier).__name__} has none")
    with torch.no_grad():  # before --resume loads the checkpoint's weight over it
        nn.init.kaiming_normal_(classifier.weight)


@register_method("ce", "rw")
class CrossEntropy(Method):
    """CE; RW = CE with REWEIGHT.TYPE inverse. h keeps nn.Linear's default initialisation."""

    def build_criterion(self) -> nn.Module:
        return CrossEntropyLoss(self.num_classes)


@register_method("ce_drw", "ce_drs")
class DeferredCrossEntropy(CrossEntropy):
    """CE-DRW / CE-DRS = CE with a deferred weight / sampler switch (hooks), h initialised as Cao et al.'s code."""

    def prepare(self, context) -> None:
        super().prepare(context)
        init_like_cao(context.model.head.balanced)


@register_method("focal")
class Focal(Method):
    """Softmax focal loss (the form of Cao et al.'s CIFAR-LT baseline), h initialised as their code."""

    def build_criterion(self) -> nn.Module:
        return FocalLoss(self.num_classes, self.cfg.LOSS.FOCAL_GAMMA)

    def prepare(self, context) -> None:
        super().prepare(context)
        init_like_cao(context.model.head.balanced)


@register_method("cb_focal")
class ClassBalancedFocal(Method):
    """CB-Focal (Cui et al. 2019): sigmoid focal loss with REWEIGHT.TYPE effective from epoch 0."""

    def build_criterion(self) -> nn.Module:
        return SigmoidFocalLoss(self.num_classes, self.cfg.LOSS.FOCAL_GAMMA)

    def prepare(self, context) -> None:
        super().prepare(context)
        bias = context.model.head.balanced.bias
        if bias is None:
            raise ValueError("METHOD cb_focal starts h's bias at -log(C - 1) (Cui et al.): MODEL.BIAS must be True")
        if self.num_classes < 2:
            raise ValueError("METHOD cb_focal needs at least 2 classes")
        with torch.no_grad():  # before --resume loads the checkpoint's bias over it
            bias.fill_(-math.log(self.num_classes - 1))
