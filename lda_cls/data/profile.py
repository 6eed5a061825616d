"""The exponential long-tail profile of the benchmarks, and their many / medium / few split as integers
(the rule itself is lda_analysis.splits)."""
import math
from typing import List, Optional, Sequence

import numpy as np

from lda_analysis.splits import FEW_BELOW, MANY_ABOVE, SPLITS, SplitRule, split_indices

__all__ = ["long_tail_counts", "subsample_long_tail", "check_imbalance_ratio", "check_no_empty_class", "shot_groups",
           "SHOT_NAMES"]

SHOT_NAMES = SPLITS  # the names of shot_groups' 0, 1, 2


def check_imbalance_ratio(value) -> None:
    """DATASET.IMBALANCE_RATIO is n_max / n_min: 1 keeps the training set as it is, below 1 (or NaN) means nothing."""
    if not float(value) >= 1:
        raise ValueError(f"DATASET.IMBALANCE_RATIO must be >= 1 (n_max / n_min; 1 keeps the training set as it "
                         f"is), got {value}")


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


def check_no_empty_class(wanted: Sequence[int], n_max: int, imbalance_ratio: float,
                         class_names: Optional[Sequence[str]] = None) -> None:
    """A profile that keeps no image of a class is an error naming the classes: training on would report
    shot groups and an imbalance ratio of classes the model never saw."""
    empty = [index for index, count in enumerate(wanted) if count == 0]
    if not empty:
        return
    names = [str(class_names[i]) if class_names is not None else str(i) for i in empty]
    shown = ", ".join(names[:20]) + (f" (and {len(names) - 20} more)" if len(names) > 20 else "")
    raise ValueError(f"DATASET.IMBALANCE_RATIO {imbalance_ratio:g} leaves {len(empty)} of the {len(wanted)} classes "
                     f"without a training image: {shown} (class i keeps floor(n_max x IR^(-i/(C-1))) images, "
                     f"n_max {n_max} here); an IR of at most {n_max} keeps an image of every class")


def subsample_long_tail(targets: Sequence[int], num_classes: int, imbalance_ratio: float,
                        seed: int = 0, n_max: int = 0, class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Indices (sorted) of a long-tailed subset of a dataset with labels ``targets``.

    Class i keeps a random (seeded) subset of n_i images; n_max defaults to the
    largest class. Raises if a class has fewer images than the profile asks for, or if
    the profile leaves a class with none (``class_names`` name them in the error).
    """
    targets = np.asarray(targets, dtype=np.int64)
    available = np.bincount(targets, minlength=num_classes)
    n_max = int(n_max) if n_max > 0 else int(available.max())
    wanted = long_tail_counts(n_max, num_classes, imbalance_ratio)
    check_no_empty_class(wanted, n_max, imbalance_ratio, class_names)
    rng = np.random.RandomState(seed)
    keep = []
    for class_index, count in enumerate(wanted):
        members = np.flatnonzero(targets == class_index)
        if len(members) < count:
            raise ValueError(f"class {class_index} has {len(members)} images, the long-tail profile "
                             f"(n_max={n_max}, IR={imbalance_ratio}) needs {count}")
        keep.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(keep))


def shot_groups(class_counts: Sequence[int], many_threshold: int = MANY_ABOVE,
                few_threshold: int = FEW_BELOW) -> np.ndarray:
    """0 = many (> many_threshold training images), 1 = medium, 2 = few (< few_threshold): lda_analysis.splits."""
    return split_indices(class_counts, SplitRule(many_above=many_threshold, few_below=few_threshold))
