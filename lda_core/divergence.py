"""Intra- and inter-class divergence of projected features (paper Eq. 7 and 8).

With class centres mu_c = mean of the features of class c in the mini-batch:

* intra (Eq. 7): for every class with more than one sample, the mean of
  1 - cos(f_i, mu_c) over its samples; averaged over those classes.
* inter (Eq. 8): hinge max(0, margin - (1 - cos(mu_i, mu_j))) over ordered pairs
  i != j of classes present in the batch, averaged, or weighted by w_i + w_j
  (normalised to sum 1) when ``weighted_inter``.

Vectorisation: a batch of B samples holds at most B classes, so the classes are
renumbered 0..K-1 (K <= B) from a sort of the targets and everything is computed
on B padded groups. That needs neither ``torch.unique`` nor boolean indexing
(both synchronise a GPU with the host) nor a C x C matrix over all classes.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision (autocast outputs) so reductions accumulate in fp32; keep fp64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def compact_class_ids(targets: torch.Tensor) -> torch.Tensor:
    """Renumber the classes of a batch 0..K-1 in increasing class order.

    Returns a tensor of the same shape as ``targets``; K is not materialised on
    the host.
    """
    sorted_targets, order = torch.sort(targets)
    starts_new_class = torch.ones_like(sorted_targets, dtype=torch.long)
    starts_new_class[1:] = (sorted_targets[1:] != sorted_targets[:-1]).long()
    sorted_ids = torch.cumsum(starts_new_class, dim=0) - 1
    return torch.empty_like(sorted_ids).scatter_(0, order, sorted_ids)


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
    batch_size = features.shape[0]
    group = compact_class_ids(targets)
    # One-hot assignment of samples (columns) to class groups (rows). Sums and
    # gathers over groups become B x B matrix products: scatter-add (index_add_)
    # with repeated indices is many times slower, on CPUs especially.
    slots = torch.arange(batch_size, device=features.device)
    assignment = (slots.unsqueeze(1) == group.unsqueeze(0)).to(features.dtype)
    if valid is not None:
        assignment = assignment * valid.to(features.dtype).unsqueeze(0)
    group_size = assignment.sum(dim=1)
    centres = (assignment @ features) / group_size.clamp(min=1).unsqueeze(1)

    # Eq. 7: pull each feature towards its class centre.
    cosine_to_centre = F.cosine_similarity(features, assignment.t() @ centres, dim=1, eps=eps)
    spread = (assignment @ (1 - cosine_to_centre)) / group_size.clamp(min=1)
    has_pairs = (group_size > 1).to(features.dtype)
    intra = (spread * has_pairs).sum() / has_pairs.sum().clamp(min=1)

    # Eq. 8: push class centres at least `margin` apart in cosine distance.
    unit_centres = F.normalize(centres, dim=1, eps=eps)
    distance = 1 - unit_centres @ unit_centres.t()
    hinge = (margin - distance).clamp(min=0)
    present = (group_size > 0).to(features.dtype)
    off_diagonal = 1 - torch.eye(batch_size, device=features.device, dtype=features.dtype)
    pairs = present.unsqueeze(1) * present.unsqueeze(0) * off_diagonal
    if class_weights is not None:
        group_weight = assignment @ class_weights.to(features.dtype)[targets] / group_size.clamp(min=1)
        pairs = pairs * (group_weight.unsqueeze(1) + group_weight.unsqueeze(0))
    inter = (hinge * pairs).sum() / pairs.sum().clamp(min=eps)
    return intra, inter
