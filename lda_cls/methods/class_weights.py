"""Per-class loss weights w_y of the re-weighting methods, normalised to sum to C.

* "inverse":   w_y ~ 1 / n_y (class re-weighting, RW; LDA Table 5);
* "effective": w_y ~ (1 - beta) / (1 - beta^n_y), the inverse effective number of samples
  (Cui et al. 2019, Eq. 3 and Sec. 4), used by CB losses and by DRW (Cao et al. 2019, beta 0.9999).
The scale does not matter to the losses here (weighted means), only the ratios do.
"""
from typing import Sequence

import torch

__all__ = ["WEIGHT_TYPES", "class_weights"]

WEIGHT_TYPES = ("inverse", "effective")


def class_weights(kind: str, class_counts: Sequence[int], beta: float = 0.9999) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64).clamp(min=1)
    if kind == "inverse":
        weights = 1.0 / counts
    elif kind == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"REWEIGHT.BETA must lie in [0, 1), got {beta}")
        weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    else:
        raise ValueError(f"REWEIGHT.TYPE must be one of {WEIGHT_TYPES} (or 'none'), got {kind!r}")
    return (weights * len(counts) / weights.sum()).float()
