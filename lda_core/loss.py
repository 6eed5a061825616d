"""LDALoss: the training objective of Long-tailed Distribution Adaptation.

Paper (Peng et al., ACM MM 2021), Section 3:

* Eq. 5, unbalanced risk of h':  R_s(h') = E_{p_s}[CE(h'(x), y)]
* Eq. 5, balanced risk of h:     R_u(h)  = E_{p_s}[w_y CE(h(x), y)], w_y ~ p_u(y) / p_s(y)
* Eq. 6, balance factor:          alpha   = (delta acc)^gamma, no gradient
* Eq. 7 / 8, divergence:          intra + inter on the projected features
* Eq. 9, total:                   R_s(h') + alpha R_u(h) + beta (intra + inter)

Two scalings are offered. ``scaling="official"`` (the default) is what the
published numbers were trained with (github.com/pengzhiliang/LDA):

* w_y = 1 / (C n_y) and the balanced risk is a *sum* over the batch,
  i.e. (B / N) times the normalised expectation;
* delta acc is measured in percent, so alpha = (percent gap)^gamma;
* the loss factors multiply the two risks (balanced_factor 2 in the official
  configs).

``scaling="normalized"`` uses w_y = N / (C n_y) (mean 1 under the training
distribution), a batch *mean* for the balanced risk and delta acc as a fraction.
It is scale-free in N and B, but its alpha is orders of magnitude smaller for the
same gap, so it needs its own gamma / factors; it is not the default.
"""
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from .balance import AccuracyGapWindow
from .cross_entropy import cross_entropy_and_top1
from .divergence import at_least_float32, class_divergence

SCALINGS = ("official", "normalized")


def _check_inputs(unbalanced_logits: torch.Tensor, balanced_logits: torch.Tensor,
                  targets: torch.Tensor, features: Optional[torch.Tensor], num_classes: int) -> None:
    if unbalanced_logits.dim() != 2 or unbalanced_logits.shape[1] != num_classes:
        raise ValueError(f"unbalanced_logits must have shape (B, {num_classes}), got {tuple(unbalanced_logits.shape)}")
    if balanced_logits.shape != unbalanced_logits.shape:
        raise ValueError(f"balanced_logits shape {tuple(balanced_logits.shape)} differs from "
                         f"unbalanced_logits shape {tuple(unbalanced_logits.shape)}")
    if targets.dim() != 1 or targets.shape[0] != unbalanced_logits.shape[0]:
        raise ValueError(f"targets must have shape ({unbalanced_logits.shape[0]},), got {tuple(targets.shape)}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if features is not None and (features.dim() != 2 or features.shape[0] != targets.shape[0]):
        raise ValueError(f"features must have shape ({targets.shape[0]}, D), got {tuple(features.shape)}")
    _check_target_range(targets, num_classes)


def _check_target_range(targets: torch.Tensor, num_classes: int) -> None:
    if torch.compiler.is_compiling():
        return
    if targets.device.type == "cpu":
        if targets.numel() == 0:
            return
        lowest, highest = torch.aminmax(targets)
        if lowest < 0 or highest >= num_classes:
            bad = targets[(targets < 0) | (targets >= num_classes)]
            raise ValueError(f"targets must lie in [0, {num_classes}), found {bad.unique().tolist()}")
    else:
        in_range = ((targets >= 0) & (targets < num_classes)).all()
        # A host-side check would synchronise every step; the async assert fails
        # the CUDA stream with this message instead.
        torch._assert_async(in_range, f"LDALoss: targets must lie in [0, {num_classes})")


class LDALoss(nn.Module):
    """Eq. 9 of the paper as one module, shared by classification and detection.

    Args:
        class_counts: training-set count n_y per class (length C). A count of 0
            is treated as 1: such a class never appears as a target.
        gamma: exponent of Eq. 6.
        beta: weight of the divergence terms (Eq. 9).
        margin: hinge margin of the inter-class term (Eq. 8).
        window: L, number of recent mini-batches in delta acc (Eq. 6).
        unbalanced_factor, balanced_factor: multipliers of R_s(h') and alpha R_u(h).
        weighted_inter: weight inter pairs by w_i + w_j (Eq. 8) instead of a plain mean.
        fixed_alpha: constant alpha instead of Eq. 6 (grid-search ablation).
        scaling: "official" (default) or "normalized"; see the module docstring.

    ``forward`` returns a dict of tensors: "loss" (to back-propagate),
    "loss_unbalanced" (R_s(h')), "loss_balanced" (R_u(h), before alpha),
    "loss_intra", "loss_inter", "alpha" and "delta_acc".
    Only a module in training mode updates the accuracy window.
    """

    def __init__(self, class_counts: Union[Sequence[int], torch.Tensor], gamma: float = 2.0,
                 beta: float = 1.0, margin: float = 1.0, window: int = 100,
                 unbalanced_factor: float = 1.0, balanced_factor: float = 2.0,
                 weighted_inter: bool = False, fixed_alpha: Optional[float] = None,
                 scaling: str = "official"):
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
        if counts.numel() == 0:
            raise ValueError("class_counts is empty")
        if (counts < 0).any():
            raise ValueError(f"class_counts must be non-negative, found {counts.min().item()}")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        counts = counts.clamp(min=1)
        num_classes = counts.numel()
        weights = 1.0 / (num_classes * counts)
        if scaling == "normalized":
            weights = weights * counts.sum()
        self.num_classes = num_classes
        self.beta = float(beta)
        self.margin = float(margin)
        self.unbalanced_factor = float(unbalanced_factor)
        self.balanced_factor = float(balanced_factor)
        self.weighted_inter = bool(weighted_inter)
        self.scaling = scaling
        # Not saved: derived from class_counts, which the owner passes again.
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.balance = AccuracyGapWindow(window=window, gamma=gamma,
                                         percent=(scaling == "official"), fixed_alpha=fixed_alpha)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, beta={self.beta}, margin={self.margin}, "
                f"factors=({self.unbalanced_factor}, {self.balanced_factor}), "
                f"weighted_inter={self.weighted_inter}, scaling={self.scaling!r}")

    def forward(self, unbalanced_logits: torch.Tensor, balanced_logits: torch.Tensor,
                targets: torch.Tensor, features: Optional[torch.Tensor] = None,
                valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Eq. 9 on a batch. ``valid`` (B,) bool, optional, keeps only those samples
        in every term, the accuracy window included; the others' targets may be
        anything (e.g. detectron2's background index C). It is a mask rather than
        indexing so that a data-dependent subset costs no host synchronisation.
        """
        if valid is not None:
            if valid.shape != targets.shape:
                raise ValueError(f"valid must have shape {tuple(targets.shape)}, got {tuple(valid.shape)}")
            targets = torch.where(valid.bool(), targets, torch.zeros_like(targets))
        _check_inputs(unbalanced_logits, balanced_logits, targets, features, self.num_classes)
        # The loss runs in fp32 whatever the autocast region around it: the centre
        # cosines and the tiny 1/(C n_y) weights lose too much in bf16.
        with torch.autocast(device_type=targets.device.type, enabled=False):
            return self._forward_fp32(unbalanced_logits, balanced_logits, targets.long(), features, valid)

    def _forward_fp32(self, unbalanced_logits, balanced_logits, targets, features, valid):
        unbalanced_logits = at_least_float32(unbalanced_logits)
        balanced_logits = at_least_float32(balanced_logits)
        dtype = unbalanced_logits.dtype
        # Per-sample weights of the two risks; a mean divides by max(n, 1), so an empty batch
        # gives 0, not NaN, and keeps its graph.
        balanced_weights = self.class_weights.to(dtype)[targets]
        if valid is None:
            unbalanced_weights = torch.full_like(targets, 1 / max(targets.shape[0], 1), dtype=dtype)
            if self.scaling == "normalized":
                balanced_weights = balanced_weights / max(targets.shape[0], 1)
        else:
            valid = valid.to(dtype)
            unbalanced_weights = valid / valid.sum().clamp(min=1)
            balanced_weights = balanced_weights * (unbalanced_weights if self.scaling == "normalized" else valid)
        loss_unbalanced, unbalanced_correct = cross_entropy_and_top1(unbalanced_logits, targets, unbalanced_weights)
        loss_balanced, balanced_correct = cross_entropy_and_top1(balanced_logits, targets, balanced_weights)

        if self.training:
            self.balance.record(unbalanced_correct, balanced_correct, valid)
        alpha, delta_acc = self.balance.alpha()

        loss = self.unbalanced_factor * loss_unbalanced + self.balanced_factor * alpha * loss_balanced
        if features is not None:
            loss_intra, loss_inter = class_divergence(
                features, targets, margin=self.margin, valid=valid,
                class_weights=self.class_weights if self.weighted_inter else None)
            loss = loss + self.beta * (loss_intra + loss_inter)
        else:
            loss_intra = loss_inter = torch.zeros((), device=loss.device)
        return {
            "loss": loss,
            "loss_unbalanced": loss_unbalanced.detach(),
            "loss_balanced": loss_balanced.detach(),
            "loss_intra": loss_intra.detach(),
            "loss_inter": loss_inter.detach(),
            "alpha": alpha,
            "delta_acc": delta_acc,
        }
