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


def _normalize(x: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(x / max(|x|, eps), max(|x|, eps)) row-wise, as F.normalize."""
    norm = torch.linalg.vector_norm(x, dim=1).clamp(min=eps)
    return x / norm.unsqueeze(1), norm


def _normalize_backward(unit: torch.Tensor, norm: torch.Tensor, grad_unit: torch.Tensor, eps: float) -> torch.Tensor:
    """Gradient w.r.t. x of unit = x / max(|x|, eps): the radial part is removed unless |x| was clamped."""
    radial = (unit * grad_unit).sum(dim=1) * (norm > eps).to(unit.dtype)
    return (grad_unit - unit * radial.unsqueeze(1)) / norm.unsqueeze(1)


class _ClassDivergence(torch.autograd.Function):
    """(intra, inter) from features; every other input is a constant derived from the targets.

    class_ids (B,): compact class of each sample. kept (B,): 1 for samples that count.
    sample_weight (B,): [n_c > 1] / n_c of the sample's class (0 if left out), so a
    sum over samples is a sum over classes of class means. class_weight (B,): per
    compact class, 0 where no class, else 1 or w_c. present (B,): 1 where a class.
    """

    @staticmethod
    def forward(ctx, features, class_ids, kept, sample_weight, class_weight, present,
                intra_normaliser, inter_normaliser, margin, eps):
        unit_features, feature_norm = _normalize(features, eps)
        centre_sums = torch.zeros_like(features).index_add_(0, class_ids, features * kept.unsqueeze(1))
        unit_centres, centre_norm = _normalize(centre_sums, eps)   # row k: the direction of mu_k
        own_centre = unit_centres.index_select(0, class_ids)

        # Eq. 7: mean over classes with two samples or more of the class mean of 1 - cos(f_i, mu).
        cosine_to_centre = (unit_features * own_centre).sum(dim=1)
        intra = (sample_weight * (1 - cosine_to_centre)).sum() / intra_normaliser

        # Eq. 8 over ordered pairs k != l of present classes. Pairs weigh w_k + w_l (h symmetric,
        # so 2 sum_k w_k h_kl) or 1; the normaliser, sum_k w_k (K - 1), is the same sum with h = 1.
        hinge = (unit_centres @ unit_centres.t()).sub_(1 - margin).clamp_(min=0)
        hinge.fill_diagonal_(0)
        inter_scale = torch.where(inter_normaliser > 0, 1 / inter_normaliser.clamp(min=eps),
                                  torch.zeros_like(inter_normaliser))
        inter = (class_weight * (hinge @ present)).sum() * inter_scale

        ctx.save_for_backward(class_ids, kept, sample_weight, class_weight, present, unit_features, feature_norm,
                              unit_centres, centre_norm, own_centre, hinge, intra_normaliser, inter_scale)
        ctx.eps = eps
        return intra, inter

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_intra, grad_inter):
        (class_ids, kept, sample_weight, class_weight, present, unit_features, feature_norm,
         unit_centres, centre_norm, own_centre, hinge, intra_normaliser, inter_scale) = ctx.saved_tensors
        grad_cosine = ((-grad_intra / intra_normaliser) * sample_weight).unsqueeze(1)
        # d inter / d (U U^T)_kl = g w_k present_l inside the hinge; U U^T is symmetric, so
        # d / dU = (G + G^T) U.
        grad_gram = ((grad_inter * inter_scale) * class_weight).unsqueeze(1) * present.unsqueeze(0)
        grad_gram = (grad_gram + grad_gram.t()) * (hinge > 0).to(hinge.dtype)
        grad_unit_centres = (grad_gram @ unit_centres).index_add_(0, class_ids, grad_cosine * unit_features)
        grad_centre_sums = _normalize_backward(unit_centres, centre_norm, grad_unit_centres, ctx.eps)
        grad_features = torch.addcmul(
            _normalize_backward(unit_features, feature_norm, grad_cosine * own_centre, ctx.eps),
            kept.unsqueeze(1), grad_centre_sums.index_select(0, class_ids))
        return grad_features, None, None, None, None, None, None, None, None, None


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
    kept = torch.ones_like(targets, dtype=dtype) if valid is None else valid.to(dtype)
    class_ids = compact_class_ids(targets)
    class_size = torch.zeros_like(kept).index_add_(0, class_ids, kept)     # n_k; 0 past the K classes
    present = (class_size > 0).to(dtype)
    has_pairs = (class_size > 1).to(dtype)
    sample_weight = kept * (has_pairs / class_size.clamp(min=1)).index_select(0, class_ids)
    if class_weights is None:
        class_weight = present
    else:
        class_labels = torch.zeros_like(targets).scatter_(0, class_ids, targets)
        class_weight = present * class_weights.to(dtype)[class_labels]
    intra_normaliser = has_pairs.sum().clamp(min=eps)
    inter_normaliser = class_weight.sum() * (present.sum() - 1)
    return _ClassDivergence.apply(features, class_ids, kept, sample_weight, class_weight, present,
                                  intra_normaliser, inter_normaliser, float(margin), float(eps))
