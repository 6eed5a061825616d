"""Intra- and inter-class divergence of projected features (paper Eq. 7 and 8).

With class centres mu_c = mean of the features of class c in the mini-batch:

* intra (Eq. 7): for every class with more than one sample, the mean of
  1 - cos(f_i, mu_c) over its samples; averaged over those classes.
* inter (Eq. 8): hinge max(0, margin - (1 - cos(mu_i, mu_j))) over ordered pairs
  i != j of classes present in the batch, averaged, or weighted by w_i + w_j
  (normalised to sum 1) when ``weighted_inter``.

Vectorisation: everything is computed per sample, through the B x B same-class
matrix M_ij = [y_i == y_j]. Row i of M @ F is the feature sum of sample i's
class, whose direction is that of mu_{y_i}; n_i = sum_j M_ij is its class size,
so weighting sample i by 1 / n_i counts each class once. This needs neither
``torch.unique`` nor boolean indexing (both synchronise a GPU with the host),
nor a C x C matrix over all classes, nor scatter-adds (slow with repeated
indices), and it does not depend on the order of the samples.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision (autocast outputs) so reductions accumulate in fp32; keep fp64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def class_divergence(features: torch.Tensor, targets: torch.Tensor, margin: float = 1.0,
                     class_weights: Optional[torch.Tensor] = None,
                     valid: Optional[torch.Tensor] = None, eps: float = 1e-8) -> Tuple[torch.Tensor, torch.Tensor]:
    """Return (intra, inter) for features (B, D) with integer targets (B,).

    ``class_weights`` (C,), if given, weights the inter pairs by w_i + w_j.
    ``valid`` (B,), if given, leaves the other samples out of every class.
    Both terms are 0 (and still back-propagate) when they are undefined: no
    class with two samples for intra, fewer than two classes for inter.
    """
    features = at_least_float32(features)
    dtype = features.dtype
    same_class = (targets.unsqueeze(1) == targets.unsqueeze(0)).to(dtype)
    if valid is None:
        kept = torch.ones_like(targets, dtype=dtype)
    else:
        kept = valid.to(dtype)
        same_class = same_class * kept.unsqueeze(0) * kept.unsqueeze(1)
    class_size = same_class.sum(dim=1)                      # n_{y_i}; 0 for samples left out
    per_class = kept / class_size.clamp(min=1)              # 1 / n_{y_i}: each class counts once
    num_classes = per_class.sum().round()                   # K, classes in the batch (exact)
    # Row i: the feature sum of sample i's class, whose direction is that of mu_{y_i}.
    unit_centres = F.normalize(same_class @ features, dim=1, eps=eps)

    # Eq. 7: mean over classes with two samples or more of the class mean of 1 - cos(f_i, mu).
    cosine_to_centre = (F.normalize(features, dim=1, eps=eps) * unit_centres).sum(dim=1)
    has_pairs = per_class * (class_size > 1).to(dtype)
    intra = (has_pairs * (1 - cosine_to_centre)).sum() / has_pairs.sum().clamp(min=eps)

    # Eq. 8: hinge on the cosine distance of the centres, over pairs of different classes.
    # sum_{j in other classes} h_ij / n_j = sum_j h_ij / n_j - h(mu_i, mu_i): the second term is
    # sample i's own class, whose centre is its own. Pairs weigh w_i + w_j (h symmetric, so
    # 2 sum w_i h_ij) or, unweighted, 1; the normaliser is the same sum with h = 1.
    hinge = (unit_centres @ unit_centres.t() - (1 - margin)).clamp(min=0)
    own_class_hinge = ((unit_centres * unit_centres).sum(dim=1) - (1 - margin)).clamp(min=0)
    other_classes_hinge = (hinge @ per_class - own_class_hinge * kept).clamp(min=0)  # >= 0 but for rounding
    pair_weight = per_class if class_weights is None else per_class * class_weights.to(dtype)[targets]
    inter = (pair_weight * other_classes_hinge).sum()
    normaliser = (pair_weight * (num_classes - kept)).sum()
    inter = torch.where(normaliser > 0, inter / normaliser.clamp(min=eps), torch.zeros_like(inter))
    return intra, inter
