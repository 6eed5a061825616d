"""LDALoss: the training objective of Long-tailed Distribution Adaptation.

Paper (Peng et al., ACM MM 2021), Section 3:

* Eq. 5, unbalanced risk of h':  R_s(h') = E_{p_s}[CE(h'(x), y)]
* Eq. 5, balanced risk of h:     R_u(h)  = E_{p_s}[w_y CE(h(x), y)], w_y ~ p_u(y) / p_s(y)
* Eq. 6, balance factor:          alpha   = (delta acc)^gamma, no gradient
* Eq. 7 / 8, divergence:          intra + inter on the projected features
* Eq. 9, total:                   R_s(h') + alpha R_u(h) + beta (intra + inter)

``balanced_risk`` chooses how R_u(h) targets the balanced distribution:
"importance_weighted" (the paper: w_y CE(h(x), y)) or "logit_adjusted", the
logit-adjusted loss CE(h(x) + log p_s(y), y) of Menon et al. (ICLR 2021, Eq. 10,
tau = 1; Balanced Softmax, Ren et al. 2020), whose minimiser is the balanced
classifier whatever the network's capacity, where importance weights lose their
effect once an over-parameterised network fits the training set (Byrd and Lipton,
ICML 2019). Its per-sample weight is the mean of the importance weights under
p_s (1 / N official, 1 for the mean scalings), so every scaling below and alpha
weigh the two risks alike. h's accuracy in delta acc is always that of the
unshifted logits, the classifier used at test time.

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

``scaling="calibrated"`` takes the normalised risk and the official alpha (delta acc
in percent). Its ``balanced_factor`` is the coefficient of the normalised balanced risk
R_u = E_{p_s}[N / (C n_y) CE] at alpha = 1, whatever the batch, the number of GPUs or
N. The official scaling's coefficient of that same risk is balanced_factor * B / N
(B valid samples per global step): what "official" means changes with B and N, which
is why detection (B / N ~ 1e-4 on LVIS) uses "calibrated". Every forward returns the
step's effective coefficient, balanced_factor * alpha (* B / N for official), as
"balanced_coefficient".

Global batch. Under ``torch.distributed`` (and ``global_batch=True``, the default)
every rank's loss is its share of the loss of one process on the concatenated
global batch, the official code's ``DataParallel`` semantics: the means and the
official sum run over the valid samples of all ranks, the class centres of Eq. 7-8
come from the all-gathered features (``lda_core.distributed``, whose backward
sums the ranks' gradients), and the shares are scaled so that DDP's
gradient *averaging* yields exactly the one-process gradient. Every rank must pass the
same batch size B; pad with ``valid=False`` where the numbers of samples differ.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import nn

from .arguments import finite_number
from .balance import AccuracyGapWindow, correct_counts, is_top1
from .cross_entropy import cross_entropy_and_top1
from .distributed import gather_rows, gather_rows_with_grad, world_size as global_world_size
from .divergence import at_least_float32, class_divergence

SCALINGS = ("official", "normalized", "calibrated")
BALANCED_RISKS = ("importance_weighted", "logit_adjusted")
# Scalings whose class weights have mean 1 under the training distribution and whose
# balanced risk is a mean over the batch.
_MEAN_RISK_SCALINGS = ("normalized", "calibrated")



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
        scaling: "official" (default), "normalized" or "calibrated"; see the module docstring.
        balanced_risk: "importance_weighted" (default, the paper) or "logit_adjusted";
            see the module docstring.
        global_batch: under torch.distributed, compute every term on the global batch
            (see the module docstring); False gives each rank's local-batch loss.

    ``forward`` returns a dict of tensors: "loss" (to back-propagate),
    "loss_unbalanced" (R_s(h')), "loss_balanced" (R_u(h), before alpha),
    "loss_intra", "loss_inter", "alpha", "delta_acc" and "balanced_coefficient"
    (the effective coefficient of the normalised balanced risk this step).
    Under torch.distributed the loss values are this rank's shares: their mean
    over ranks is the global-batch value; alpha and delta acc are global.
    Only a module in training mode updates the accuracy window.
    """

    def __init__(self, class_counts: Union[Sequence[int], torch.Tensor], gamma: float = 2.0,
                 beta: float = 1.0, margin: float = 1.0, window: int = 100,
                 unbalanced_factor: float = 1.0, balanced_factor: float = 2.0,
                 weighted_inter: bool = False, fixed_alpha: Optional[float] = None,
                 scaling: str = "official", global_batch: bool = True,
                 balanced_risk: str = "importance_weighted"):
        super().__init__()
        counts = _checked_class_counts(class_counts)
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if balanced_risk not in BALANCED_RISKS:
            raise ValueError(f"balanced_risk must be one of {BALANCED_RISKS}, got {balanced_risk!r}")
        counts = counts.clamp(min=1)
        num_classes = counts.numel()
        weights = 1.0 / (num_classes * counts)
        if scaling in _MEAN_RISK_SCALINGS:
            weights = weights * counts.sum()
        log_prior = torch.zeros_like(counts)
        if balanced_risk == "logit_adjusted":
            # Uniform weights at the importance weights' mean under p_s: sum_y (n_y / N) w_y.
            weights = torch.full_like(weights, float((counts * weights).sum() / counts.sum()))
            log_prior = (counts / counts.sum()).log()
        self.num_classes = num_classes
        self.num_samples = float(counts.sum())  # N, of the normalised risk's weights N / (C n_y)
        self.beta = finite_number("beta", beta, minimum=0.0)
        self.margin = finite_number("margin", margin)
        self.unbalanced_factor = finite_number("unbalanced_factor", unbalanced_factor)
        self.balanced_factor = finite_number("balanced_factor", balanced_factor)
        self.weighted_inter = bool(weighted_inter)
        self.scaling = scaling
        self.balanced_risk = balanced_risk
        self.global_batch = bool(global_batch)
        # Not saved: derived from class_counts, which the owner passes again.
        self.register_buffer("class_weights", weights.float(), persistent=False)
        self.register_buffer("balanced_shift", log_prior.float(), persistent=False)
        self.balance = AccuracyGapWindow(window=window, gamma=gamma,
                                         percent=(scaling != "normalized"), fixed_alpha=fixed_alpha)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, beta={self.beta}, margin={self.margin}, "
                f"factors=({self.unbalanced_factor}, {self.balanced_factor}), "
                f"weighted_inter={self.weighted_inter}, scaling={self.scaling!r}, global_batch={self.global_batch}, "
                f"balanced_risk={self.balanced_risk!r}")

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
        risk_logits = balanced_logits
        if self.balanced_risk == "logit_adjusted":
            risk_logits = balanced_logits + self.balanced_shift.to(dtype)
        world_size = global_world_size() if self.global_batch else 1
        balanced_weights = self.class_weights.to(dtype)[targets]
        if valid is None and world_size == 1:
            # The batch size is known on the host: the weights of both means are plain numbers.
            num_samples = targets.shape[0]
            mean_scale = 1 / max(num_samples, 1)
            unbalanced_weights = torch.full_like(targets, mean_scale, dtype=dtype)
            if self.scaling in _MEAN_RISK_SCALINGS:
                balanced_weights = balanced_weights * mean_scale
            loss_unbalanced, unbalanced_correct = cross_entropy_and_top1(unbalanced_logits, targets, unbalanced_weights)
            loss_balanced, balanced_correct = cross_entropy_and_top1(risk_logits, targets, balanced_weights)
            balanced_correct = self._tested_top1(balanced_logits, targets, balanced_correct)
            counts = None
        else:
            # Sums over this rank's valid samples, then one all-reduce of three numbers: the global
            # number of valid samples turns the sums into global means (an empty batch gives 0, not
            # NaN, and keeps its graph), and the correct counts feed alpha (Eq. 6).
            kept = torch.ones_like(targets, dtype=dtype) if valid is None else valid.to(dtype)
            loss_unbalanced, unbalanced_correct = cross_entropy_and_top1(unbalanced_logits, targets, kept)
            loss_balanced, balanced_correct = cross_entropy_and_top1(risk_logits, targets, balanced_weights * kept)
            balanced_correct = self._tested_top1(balanced_logits, targets, balanced_correct)
            counts = correct_counts(unbalanced_correct, balanced_correct, kept, dtype)
            if world_size > 1:
                dist.all_reduce(counts)
            num_samples = counts[2]
            # DDP averages the ranks' gradients: a rank's share of a global sum is world_size x its own part.
            mean_scale = world_size / num_samples.clamp(min=1)
            loss_unbalanced = loss_unbalanced * mean_scale
            loss_balanced = loss_balanced * (mean_scale if self.scaling in _MEAN_RISK_SCALINGS else world_size)

        if self.training:
            if counts is None:
                # Alpha is global even for rank-local losses (global_batch=False): all-reduced there.
                self.balance.record(unbalanced_correct, balanced_correct)
            else:
                # Counts already summed over ranks where that applies: no second all-reduce.
                self.balance.record_counts(counts)
        alpha, delta_acc = self.balance.alpha()
        balanced_alpha = self.balanced_factor * alpha
        balanced_coefficient = balanced_alpha
        if self.scaling == "official":
            # sum_i CE_i / (C n_y) = (B / N) * mean_i N CE_i / (C n_y): the official sum is B / N normalised risks.
            if torch.is_tensor(num_samples):
                balanced_coefficient = balanced_alpha * (num_samples.to(alpha.dtype) / self.num_samples)
            else:
                balanced_coefficient = balanced_alpha * (num_samples / self.num_samples)

        loss = self.unbalanced_factor * loss_unbalanced + balanced_alpha * loss_balanced
        if features is not None:
            loss_intra, loss_inter = self._divergence(features, targets, valid, world_size)
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
            "balanced_coefficient": balanced_coefficient,
        }

    def _tested_top1(self, balanced_logits, targets, risk_top1):
        """h's top-1 for delta acc: that of the test-time logits, not of the logit-adjusted ones."""
        if self.balanced_risk == "logit_adjusted":
            return is_top1(balanced_logits.detach(), targets)
        return risk_top1

    def _divergence(self, features, targets, valid, world_size):
        class_weights = self.class_weights if self.weighted_inter else None
        return global_class_divergence(features, targets, margin=self.margin, valid=valid,
                                       class_weights=class_weights, world_size=world_size)


def global_class_divergence(features: torch.Tensor, targets: torch.Tensor, margin: float,
                            valid: Optional[torch.Tensor] = None, class_weights: Optional[torch.Tensor] = None,
                            world_size: Optional[int] = None):
    """Eq. 7-8 on the global batch: with several ranks, the class centres of the all-gathered features.

    The all-gather's backward sums the gradients every rank computes for this rank's features,
    i.e. world_size x the one-process gradient, which DDP's averaging undoes; so, unlike a batch
    mean, the divergence needs no rescaling. Every rank must pass the same number of rows
    (pad with ``valid=False``). ``world_size`` 1 computes the rank-local terms.
    """
    world_size = global_world_size() if world_size is None else world_size
    if world_size == 1:
        return class_divergence(features, targets, margin=margin, valid=valid, class_weights=class_weights)
    kept = torch.ones_like(targets) if valid is None else valid.to(targets.dtype)
    labels = gather_rows(torch.stack([targets, kept], dim=1))
    all_features = gather_rows_with_grad(features)
    return class_divergence(all_features, labels[:, 0], margin=margin, valid=labels[:, 1].bool(),
                            class_weights=class_weights)


def _checked_class_counts(class_counts) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.dim() != 1:
        raise ValueError(f"class_counts must be one count per class (1-D), got shape {tuple(counts.shape)}")
    if counts.numel() == 0:
        raise ValueError("class_counts is empty")
    if not torch.isfinite(counts).all():
        raise ValueError(f"class_counts must be finite, found {counts[~torch.isfinite(counts)].tolist()[:5]}")
    if (counts < 0).any():
        raise ValueError(f"class_counts must be non-negative, found {counts.min().item()}")
    return counts
