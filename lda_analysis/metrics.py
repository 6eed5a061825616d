"""The numbers behind the analysis figures: pure functions, arrays in, arrays out.

Nothing here reads files or draws. Class frequencies are training-set counts,
split into many / medium / few by ``lda_analysis.splits``.

Paper references are to Peng et al., "Long-tailed Distribution Adaptation",
ACM MM 2021.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .splits import SPLITS, STANDARD_SPLITS, SplitRule, class_splits


def _as_numpy(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _as_float_tensor(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().double()
    return torch.as_tensor(np.asarray(array), dtype=torch.float64)


def _as_label_tensor(labels, name: str, num_samples: int) -> torch.Tensor:
    labels = torch.as_tensor(_as_numpy(labels)).long().flatten()
    if labels.numel() != num_samples:
        raise ValueError(f"{name} has {labels.numel()} labels for {num_samples} feature rows")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"{name} holds a negative class index {int(labels.min())}")
    return labels


def frequency_order(class_counts: Sequence[int]) -> np.ndarray:
    """Class indices from the most to the least frequent in training (ties keep index order)."""
    counts = _as_numpy(class_counts)
    return np.argsort(-counts, kind="stable")


def weight_norms(weight) -> np.ndarray:
    """L2 norm of each class's weight vector; ``weight`` is (C, D) as in ``nn.Linear`` (paper Fig. 4a)."""
    weight = _as_float_tensor(weight)
    if weight.dim() != 2:
        raise ValueError(f"a classifier weight must be (num_classes, dim), got shape {tuple(weight.shape)}")
    return weight.norm(dim=1).numpy()


def confusion_matrix(targets, predictions, num_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    targets = _as_numpy(targets).astype(np.int64).ravel()
    predictions = _as_numpy(predictions).astype(np.int64).ravel()
    if targets.shape != predictions.shape:
        raise ValueError(f"{targets.size} targets but {predictions.size} predictions")
    for name, values in (("targets", targets), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), found [{values.min()}, {values.max()}]")
    return np.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Top-1 accuracy of each class in percent; NaN for a class absent from the evaluated set."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 100.0 * np.diag(confusion) / support, np.nan)


def split_means(per_class_values, class_counts, rule: SplitRule = STANDARD_SPLITS) -> Dict[str, float]:
    """Mean of a per-class quantity over all classes and over each split (NaN classes skipped).

    Like the paper's many/medium/few columns this is a mean over *classes*, so it
    equals the per-split top-1 of a balanced test set. A split without classes is NaN.
    """
    values = np.asarray(per_class_values, dtype=np.float64)
    splits = class_splits(class_counts, rule)
    if values.shape != splits.shape:
        raise ValueError(f"{values.size} per-class values for {splits.size} class counts")
    result = {"all": _nanmean(values)}
    for split in SPLITS:
        result[split] = _nanmean(values[splits == split])
    return result


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def error_flow(confusion: np.ndarray, class_counts, rule: SplitRule = STANDARD_SPLITS) -> Dict[str, Dict[str, float]]:
    """Where the test errors of each split go, as shares of that split's errors.

    ``result[true_split][predicted_split]`` is the number of misclassified test
    images of ``true_split`` classes predicted as a class of ``predicted_split``,
    divided by all misclassified images of ``true_split`` (so each row sums to 1).
    ``result["few"]["many"]`` is the confusion of tail classes into head classes.
    ``result[s]["errors"]`` holds the raw error count; shares are NaN without errors.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    splits = class_splits(class_counts, rule)
    if confusion.shape != (splits.size, splits.size):
        raise ValueError(f"confusion matrix of shape {confusion.shape} for {splits.size} classes")
    errors = confusion - np.diag(np.diag(confusion))
    result = {}
    for true_split in SPLITS:
        rows = errors[splits == true_split]
        total = rows.sum()
        flow = {"errors": float(total)}
        for predicted_split in SPLITS:
            moved = rows[:, splits == predicted_split].sum()
            flow[predicted_split] = float(moved / total) if total > 0 else float("nan")
        result[true_split] = flow
    return result


def intra_inter_distance(features, targets, eps: float = 1e-12) -> Dict[str, object]:
    """Intra- and inter-class cosine distances of features (paper Sec. 3.4, Eq. 7-8, Fig. 4c).

    With mu_c the mean feature of class c over the given set and
    d(a, b) = 1 - cos(a, b):

    * ``d_intra`` = mean over classes with at least two samples of
      (mean over the samples f_i of c of d(f_i, mu_c));
    * ``d_inter`` = mean over ordered pairs (c, c'), c != c', of classes present
      of d(mu_c, mu_c');
    * ``ratio`` = d_intra / d_inter; lower means more compact, better separated classes.

    These are Eq. 7 and Eq. 8 of the paper evaluated over a whole set instead of a
    mini-batch and without the hinge margin, which is a training device. Two
    classes with orthogonal means have d_inter = 1; opposite means give 2.
    ``per_class_intra`` (length max label + 1) is NaN for classes with fewer than two samples.
    """
    features = _as_float_tensor(features)
    if features.dim() != 2:
        raise ValueError(f"features must be (num_samples, dim), got shape {tuple(features.shape)}")
    targets = _as_label_tensor(targets, "targets", features.shape[0])
    num_classes = int(targets.max()) + 1 if targets.numel() else 0
    # index_add instead of a one-hot matmul: no (N, C) matrix for 1000-class test sets.
    support = torch.zeros(num_classes, dtype=torch.float64).index_add_(
        0, targets, torch.ones_like(targets, dtype=torch.float64))
    centres = torch.zeros(num_classes, features.shape[1], dtype=torch.float64).index_add_(0, targets, features)
    centres = centres / support.clamp(min=1).unsqueeze(1)

    distance_to_centre = 1 - F.cosine_similarity(features, centres[targets], dim=1, eps=eps)
    per_class = torch.zeros_like(support).index_add_(0, targets, distance_to_centre) / support.clamp(min=1)
    per_class = torch.where(support > 1, per_class, torch.full_like(per_class, float("nan")))

    present = torch.nonzero(support > 0).flatten()
    unit_centres = F.normalize(centres[present], dim=1, eps=eps)
    pair_distance = 1 - unit_centres @ unit_centres.t()
    num_present = present.numel()
    if num_present > 1:
        off_diagonal = ~torch.eye(num_present, dtype=torch.bool)
        d_inter = float(pair_distance[off_diagonal].mean())
    else:
        d_inter = float("nan")
    d_intra = _nanmean(per_class.numpy())
    return {
        "d_intra": d_intra,
        "d_inter": d_inter,
        "ratio": d_intra / d_inter if d_inter > 0 else float("nan"),
        "per_class_intra": per_class.numpy(),
    }


def gaussian_bandwidths(features, kernel_num: int = 5, kernel_mul: float = 2.0) -> np.ndarray:
    """Squared bandwidths sigma_k^2 of the multi-bandwidth Gaussian kernel of CDD.

    As in Kang et al. (CVPR 2019, after Long et al.'s MK-MMD): the base is the
    mean squared Euclidean distance between two distinct rows of ``features``
    (the pooled training and test features), and the ``kernel_num`` bandwidths are
    base * kernel_mul ** (k - kernel_num // 2), k = 0..kernel_num-1; with the
    defaults base x {1/4, 1/2, 1, 2, 4}. Scaling every feature by s scales every
    bandwidth by s^2, so the discrepancy does not depend on the feature scale and
    runs with different feature norms stay comparable.
    """
    features = _as_float_tensor(features)
    n = features.shape[0]
    if n < 2:
        raise ValueError("need at least two feature rows to set a kernel bandwidth")
    # sum_{i,j} |x_i - x_j|^2 = 2 n sum_i |x_i|^2 - 2 |sum_i x_i|^2, without the n x n matrix.
    total = 2 * n * features.pow(2).sum() - 2 * features.sum(0).pow(2).sum()
    base = float(total / (n * (n - 1)))
    if not base > 0:
        raise ValueError("all features are identical: the kernel bandwidth would be 0")
    return base * kernel_mul ** (np.arange(kernel_num) - kernel_num // 2)


def _kernel(a: torch.Tensor, b: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) values of the mean of Gaussians exp(-|a - b|^2 / sigma_k^2)."""
    squared = torch.cdist(a, b).pow(2)
    kernel = torch.zeros_like(squared)
    for bandwidth in bandwidths:
        kernel += torch.exp(-squared / bandwidth)
    return kernel / len(bandwidths)


def _class_kernel_means(a, a_labels, b, b_labels, num_classes: int, bandwidths: torch.Tensor,
                        max_elements: int) -> torch.Tensor:
    """M[c1, c2] = mean of k(a_i, b_j) over a_i of class c1 and b_j of class c2.

    Rows of ``a`` go in chunks so that at most ``max_elements`` kernel values are
    held at once; class sums use index_add, never an (N, C) one-hot matrix.
    """
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    chunk = max(1, max_elements // max(b.shape[0], 1))
    for start in range(0, a.shape[0], chunk):
        kernel = _kernel(a[start:start + chunk], b, bandwidths)
        by_column_class = torch.zeros(kernel.shape[0], num_classes, dtype=torch.float64).index_add_(
            1, b_labels, kernel)
        sums.index_add_(0, a_labels[start:start + chunk], by_column_class)
    a_count = torch.bincount(a_labels, minlength=num_classes).double()
    b_count = torch.bincount(b_labels, minlength=num_classes).double()
    return sums / (a_count.unsqueeze(1) * b_count.unsqueeze(0)).clamp(min=1)


def contrastive_domain_discrepancy(source, source_labels, target, target_labels,
                                   num_classes: Optional[int] = None, kernel_num: int = 5,
                                   kernel_mul: float = 2.0, bandwidths: Optional[Sequence[float]] = None,
                                   unbiased: bool = True, max_elements: int = 1 << 24) -> Dict[str, object]:
    """Contrastive domain discrepancy (CDD, Kang et al. CVPR 2019, Eq. 4-6) between two labelled sets.

    Here source = training features (long-tailed p_s) and target = test features
    (balanced p_u), both labelled with their ground truth (paper Fig. 4b).

    Kernel: k(a, b) = (1/K) sum_k exp(-|a - b|^2 / sigma_k^2), the mean of K
    Gaussians (so k(a, a) = 1) with the squared bandwidths of
    :func:`gaussian_bandwidths` computed on the pooled source and target features,
    unless ``bandwidths`` (squared, sigma_k^2) are given.

    Class-conditional squared MMD (Eq. 5):
    D(c1, c2) = E k(s, s') + E k(t, t') - 2 E k(s, t), s, s' source features of
    class c1 and t, t' target features of class c2. With ``unbiased`` (default) the
    within-set means skip the pairs of a sample with itself (Gretton et al. 2012's
    U-statistic): its expectation does not depend on the sample sizes, so a tail class
    with 10 training images is not inflated by a 1/n bias; classes need two samples
    in each set. ``unbiased=False`` is CAN's biased estimate (all pairs), exactly 0
    for identical sets.

    * ``intra`` = mean over classes c of D(c, c): how far the training and test
      features of the same class lie apart (about 0 for the same distribution);
    * ``inter`` = mean over ordered pairs c != c' of D(c, c'): how far apart
      different classes lie across the two sets;
    * ``cdd`` = intra - inter (Eq. 6); lower is better.

    Only classes present in both sets (twice, if unbiased) count. ``per_class_intra``
    is D(c, c) (NaN for the others). Every row enters the kernel sums, so subsample
    large sets before calling (cost grows with (len(source) + len(target))^2; see
    :func:`samples_per_class`). ``max_elements`` bounds the kernel values in memory.
    """
    source = _as_float_tensor(source)
    target = _as_float_tensor(target)
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"source and target must be (n, D) with the same D, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    source_labels = _as_label_tensor(source_labels, "source_labels", source.shape[0])
    target_labels = _as_label_tensor(target_labels, "target_labels", target.shape[0])
    if num_classes is None:
        num_classes = int(max(source_labels.max(), target_labels.max())) + 1
    if bandwidths is None:
        bandwidths = gaussian_bandwidths(torch.cat([source, target]), kernel_num, kernel_mul)
    bandwidth_tensor = torch.as_tensor(np.asarray(bandwidths, dtype=np.float64))

    def within(features, labels):
        """Per class, the mean kernel between two samples of that class (distinct ones if unbiased)."""
        sums = torch.zeros(num_classes, dtype=torch.float64)
        for label in torch.unique(labels).tolist():  # class blocks only: sum n_c^2, not N^2, kernel values
            members = features[labels == label]
            sums[label] = _kernel(members, members, bandwidth_tensor).sum()
        count = torch.bincount(labels, minlength=num_classes).double()
        if unbiased:  # drop the n self-pairs k(x, x) = 1, average over the n (n - 1) others
            return (sums - count) / (count * (count - 1)).clamp(min=1)
        return sums / (count * count).clamp(min=1)

    source_target = _class_kernel_means(source, source_labels, target, target_labels, num_classes,
                                        bandwidth_tensor, max_elements)
    discrepancy = (within(source, source_labels).unsqueeze(1) + within(target, target_labels).unsqueeze(0)
                   - 2 * source_target)

    needed = 2 if unbiased else 1
    present = (torch.bincount(source_labels, minlength=num_classes) >= needed) & \
              (torch.bincount(target_labels, minlength=num_classes) >= needed)
    per_class_intra = torch.where(present, discrepancy.diag(), torch.full((num_classes,), float("nan"),
                                                                          dtype=torch.float64))
    pairs = present.unsqueeze(1) & present.unsqueeze(0) & ~torch.eye(num_classes, dtype=torch.bool)
    intra = _nanmean(per_class_intra.numpy())
    inter = float(discrepancy[pairs].mean()) if pairs.any() else float("nan")
    return {
        "intra": intra,
        "inter": inter,
        "cdd": intra - inter,
        "per_class_intra": per_class_intra.numpy(),
        "bandwidths": np.asarray(bandwidths, dtype=np.float64),
        "unbiased": bool(unbiased),
    }


def samples_per_class(num_classes: int, requested: Optional[int] = None, budget: int = 10_000) -> int:
    """Images per class and set that enter CDD: ``requested``, else min(100, budget // C), at least 2.

    CDD's cost grows with the square of the set size, so the default keeps each
    set at about ``budget`` images: 100 per class for CIFAR-10/100, 10 for ImageNet-LT.
    """
    if requested is not None:
        return int(requested)
    return max(2, min(100, budget // max(num_classes, 1)))


def subsample_per_class(labels, max_per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices keeping at most ``max_per_class`` random samples of each class (fixed seed)."""
    labels = _as_numpy(labels).astype(np.int64).ravel()
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):  # once per analysis, not in a training step
        members = np.flatnonzero(labels == label)
        if members.size > max_per_class:
            members = rng.choice(members, size=max_per_class, replace=False)
        keep.append(members)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def tsne_embedding(weight, seed: int = 0, perplexity: Optional[float] = None) -> np.ndarray:
    """2-D t-SNE (scikit-learn) of classifier weight vectors (C, D), as in paper Fig. 1.

    The perplexity defaults to min(30, (C - 1) / 3), since t-SNE needs it below
    the number of points; PCA initialisation and a fixed seed make it repeatable.
    """
    from sklearn.manifold import TSNE

    weight = _as_numpy(weight).astype(np.float64)
    num_points = weight.shape[0]
    if num_points < 3:
        raise ValueError(f"t-SNE needs at least 3 classes, got {num_points}")
    if perplexity is None:
        perplexity = min(30.0, max(1.0, (num_points - 1) / 3.0))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(weight)
