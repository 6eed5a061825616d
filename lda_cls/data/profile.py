"""The exponential long-tail profile and the many/medium/few split of the benchmarks."""
import math
from typing import List, Sequence

import numpy as np

__all__ = ["long_tail_counts", "subsample_long_tail", "shot_groups", "SHOT_NAMES"]

SHOT_NAMES = ("many", "medium", "few")


def long_tail_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> List[int]:
    """n_i = floor(n_max * (1 / IR)^(i / (C - 1))) for class index i (Cui et al. 2019, Cao et al. 2019)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {imbalance_ratio}")
    if num_classes == 1:
        return [int(n_max)]
    # The small epsilon keeps exact products (e.g. 5000 * 0.01 = 50) from flooring to 49.
    return [int(math.floor(n_max * (1.0 / imbalance_ratio) ** (i / (num_classes - 1)) + 1e-9))
            for i in range(num_classes)]


def subsample_long_tail(targets: Sequence[int], num_classes: int, imbalance_ratio: float,
                        seed: int = 0, n_max: int = 0) -> np.ndarray:
    """Indices (sorted) of a long-tailed subset of a dataset with labels ``targets``.

    Class i keeps a random (seeded) subset of n_i images; n_max defaults to the
    largest class. Raises if a class has fewer images than the profile asks for.
    """
    targets = np.asarray(targets, dtype=np.int64)
    available = np.bincount(targets, minlength=num_classes)
    n_max = int(n_max) if n_max > 0 else int(available.max())
    wanted = long_tail_counts(n_max, num_classes, imbalance_ratio)
    rng = np.random.RandomState(seed)
    keep = []
    for class_index, count in enumerate(wanted):
        members = np.flatnonzero(targets == class_index)
        if len(members) < count:
            raise ValueError(f"class {class_index} has {len(members)} images, the long-tail profile "
                             f"(n_max={n_max}, IR={imbalance_ratio}) needs {count}")
        keep.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(keep))


def shot_groups(class_counts: Sequence[int], many_threshold: int = 100, few_threshold: int = 20) -> np.ndarray:
    """0 = many (> many_threshold training images), 1 = medium, 2 = few (< few_threshold)."""
    counts = np.asarray(class_counts)
    return np.where(counts > many_threshold, 0, np.where(counts < few_threshold, 2, 1))
