"""Intra- and inter-class divergence of projected features (paper Eq. 7 and 8).

With class centres mu_c = mean of the features of class c in the mini-batch:

* intra (Eq. 7): for every class with more than one sample, the mean of
  1 - cos(f_i, mu_c) over its samples; averaged over those classes.
* inter (Eq. 8): hinge max(0, margin - (1 - cos(mu_i, mu_j))) over ordered pairs
  i != j of classes present in the batch, averaged, or weighted by w_i + w_j
  (normalised to sum 1) when ``weighted_inter``.

Vectorisation: the classes of a batch of B samples get compact ids 0..K-1
(K <= B) from a sort, and every per-class tensor has B rows, the unused ones
zero. So shapes depend on B only: no ``torch.unique`` or boolean indexing (both
synchronise a GPU with the host), no C x C matrix over all classes, no Python
loop over classes, and the result does not depend on the order of the samples.

The backward is written by hand (``_ClassDivergence``): autograd would record
some 30 small nodes here, and on a CPU their per-node cost, not the arithmetic,
was most of the loss's time. By hand it is one matrix product and a dozen
element-wise ops; tests/core check it with gradcheck and against autograd.
"""
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision (autocast outputs) so reductions accumulate in fp32; keep fp64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def compact_class_ids(targets: torch.Tensor) -> torch.Tensor:
    """Number the distinct values of ``targets`` (B,) 0..K-1 in increasing order, on the device."""
    sorted_targets, order = targets.sort()
    starts_class = torch.diff(sorted_targets, prepend=sorted_targets[:1]) != 0
    ids_in_sorted_order = starts_class.long().cumsum(0)
    return torch.empty_like(ids_in_sorted_order).scatter_(0, order, ids_in_sorted_order)


def _normalize(x: torch.Tensor, eps: float, in_place: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x / max(|x|, eps), max(|x|, eps)) row-wise, as F.normalize; ``in_place`` overwrites x."""
    norm = torch.linalg.vector_norm(x, dim=1).clamp(min=eps)
    return (x.div_(norm.unsqueeze(1)) if in_place else x / norm.unsqueeze(1)), norm


def _normalize_backward_(unit: torch.Tensor, norm: torch.Tensor, grad_unit: torch.Tensor, eps: float) -> torch.Tensor:
    """Gradient w.r.t. x of unit = x / max(|x|, eps), written over ``grad_unit``.

    The radial part is removed unless |x| was clamped. In place because every
    caller passes a temporary of its own (fewer fresh buffers per step).
    """
    radial = torch.linalg.vecdot(unit, grad_unit) * (norm > eps).to(unit.dtype)
    return grad_unit.addcmul_(unit, radial.unsqueeze(1), value=-1).div_(norm.unsqueeze(1))


class _ClassDivergence(torch.autograd.Function):
    """(intra, inter) from features; every other input is a constant derived from the targets.

    class_ids (B,): compact class of each sample. kept (B,) or None: 1 for samples
    that count. sample_weight (B,): intra_scale [n_k > 1] / n_k for the sample's
    class k (0 if left out), so the sum over samples is the mean over classes of
    their means. pair_weight (B,) per compact class: 0 where no class, else
    inter_scale (times w_k if ``weighted``). present (B,): 1 where a class.
    """

    @staticmethod
    def forward(ctx, features, class_ids, kept, sample_weight, pair_weight, present, margin, eps, weighted):
        unit_features, feature_norm = _normalize(features, eps)
        kept_features = features if kept is None else features * kept.unsqueeze(1)
        centre_sums = torch.zeros_like(features).index_add_(0, class_ids, kept_features)
        unit_centres, centre_norm = _normalize(centre_sums, eps, in_place=True)  # row k: direction of mu_k
        own_centre = unit_centres.index_select(0, class_ids)

        # Eq. 7: mean over classes with two samples or more of the class mean of 1 - cos(f_i, mu).
        intra = torch.dot(sample_weight, 1 - torch.linalg.vecdot(unit_features, own_centre))

        # Eq. 8 over ordered pairs k != l of present classes. Pairs weigh w_k + w_l (h symmetric,
        # so 2 sum_k w_k h_kl) or 1; the normaliser, sum_k w_k (K - 1), is in pair_weight.
        hinge = (unit_centres @ unit_centres.t()).sub_(1 - margin).clamp_(min=0)
        hinge.fill_diagonal_(0)
        inter = torch.dot(pair_weight, hinge @ present)
        active = hinge.sign_()  # the backward needs only where the hinge is active

        ctx.save_for_backward(class_ids, kept, sample_weight, pair_weight, present, unit_features, feature_norm,
                              unit_centres, centre_norm, own_centre, active)
        ctx.eps, ctx.weighted = eps, weighted
        return intra, inter

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_intra, grad_inter):
        (class_ids, kept, sample_weight, pair_weight, present, unit_features, feature_norm,
         unit_centres, centre_norm, own_centre, active) = ctx.saved_tensors
        grad_cosine = (-grad_intra * sample_weight).unsqueeze(1)
        # inter = sum_kl r_k M_kl present_l (U U^T - 1 + m)_kl with r = pair_weight and M the hinge's
        # active set (symmetric). d / dU = (G + G^T) U with G = diag(r) M diag(present), i.e.
        # ((r present^T + present r^T) * M) U. Without class weights r = c present, and that is
        # 2 r * (M U) (rows of U for absent classes are 0): one matrix product, no B x B temporaries.
        grad_row = grad_inter * pair_weight
        if ctx.weighted:
            grad_gram = torch.addr(torch.outer(grad_row, present), present, grad_row).mul_(active)
            grad_unit_centres = grad_gram @ unit_centres
        else:
            grad_unit_centres = (active @ unit_centres).mul_((2 * grad_row).unsqueeze(1))
        grad_unit_centres.index_add_(0, class_ids, grad_cosine * unit_features)
        grad_from_centres = _normalize_backward_(unit_centres, centre_norm, grad_unit_centres, ctx.eps)
        grad_from_centres = grad_from_centres.index_select(0, class_ids)
        if kept is not None:
            grad_from_centres.mul_(kept.unsqueeze(1))
        grad_features = _normalize_backward_(unit_features, feature_norm, grad_cosine * own_centre, ctx.eps)
        return grad_features.add_(grad_from_centres), None, None, None, None, None, None, None, None


def class_divergence(features: torch.Tensor, targets: torch.Tensor, margin: float = 1.0,
                     class_weights: Optional[torch.Tensor] = None,
                     valid: Optional[torch.Tensor] = None, eps: float = 1e-8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (intra, inter) for features (B, D) with integer targets (B,).

    ``class_weights`` (C,), if given, weights the inter pairs by w_i + w_j.
    ``valid`` (B,), if given, leaves the other samples out of every class.
    Both terms are 0 (and still back-propagate) when they are undefined: no
    class with two samples for intra, fewer than two classes for inter.
    Differentiable once, w.r.t. ``features`` only.
    """
    features = at_least_float32(features)
    dtype = features.dtype
    class_ids = compact_class_ids(targets)
    kept = None if valid is None else valid.to(dtype)
    members = torch.ones_like(targets, dtype=dtype) if kept is None else kept
    class_size = torch.zeros_like(members).index_add_(0, class_ids, members)  # n_k; 0 past the K classes
    present = (class_size > 0).to(dtype)
    has_pairs = (class_size > 1).to(dtype)
    # Normalisers: the number of classes with pairs, sum_k w_k (K - 1); 0 (no term) -> scale 0.
    intra_scale = _reciprocal_or_zero(has_pairs.sum())
    sample_weight = (intra_scale * has_pairs / class_size.clamp(min=1)).index_select(0, class_ids)
    if kept is not None:
        sample_weight = sample_weight * kept
    if class_weights is None:
        pair_weight = present
    else:
        class_labels = torch.zeros_like(targets).scatter_(0, class_ids, targets)
        pair_weight = present * class_weights.to(dtype)[class_labels]
    pair_weight = pair_weight * _reciprocal_or_zero(pair_weight.sum() * (present.sum() - 1))
    return _ClassDivergence.apply(features, class_ids, kept, sample_weight, pair_weight, present,
                                  float(margin), float(eps), class_weights is not None)


def _reciprocal_or_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, 1 / x, torch.zeros_like(x))
