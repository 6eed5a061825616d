"""The synthetic dataset of synthetic_lt.py with LVIS v1's own class-frequency profile.

Same images, shapes and colours (24 categories), but the training counts are drawn from the
LVIS v1 table shipped with lda_det (lvis_v1_counts.py), scaled down:

* the r / c / f proportions of LVIS v1 (337 / 461 / 405 of 1203 -> 7 / 9 / 8 of 24);
* within each group, the image count of category k is LVIS's group quantile (k + 0.5) / n_g:
  rare and common counts are kept as they are (1-10 and 11-100 images, so AP_r / AP_c mean
  what they mean on LVIS); frequent counts (101-1977 on LVIS) are mapped log-linearly onto
  101-MAX_FREQUENT_IMAGES so that a CPU run fits;
* instances per image: the quantile category's LVIS instance_count / image_count, capped at
  MAX_INSTANCES_PER_IMAGE (the 128-pixel images have room for a few objects only);
* the repeat-factor threshold that plays LVIS's 1e-3 (100 images of LVIS's 100,170) is
  100 / #training images: configs/LVIS-LDA/synthetic_lvis_profile.yaml states its value.

Counts are assigned to the shape x colour grid so that each frequency group covers every shape
and every colour: rare classes are new combinations of a seen shape and a seen colour.
"""
import os
from typing import NamedTuple

import numpy as np

from . import synthetic_lt
from .lvis_v1_counts import NUM_TRAIN_IMAGES, lvis_v1_train_counts

VERSION = "v1"  # bump when the generated data changes
NAME = "synthetic_lvis_profile"
SPLITS = {f"{NAME}_train": "train", f"{NAME}_val": "val"}
MAX_FREQUENT_IMAGES = 300
MAX_INSTANCES_PER_IMAGE = 3
VAL_IMAGES_PER_CATEGORY = 10
LVIS_FREQUENT_MIN = 101  # LVIS: frequent = more than 100 training images


class Profile(NamedTuple):
    train_image_counts: np.ndarray  # (C,), in synthetic_lt.CATEGORY_NAMES order
    second_instance_probabilities: np.ndarray  # (C, MAX_INSTANCES_PER_IMAGE - 1)
    instances_per_image: np.ndarray  # (C,), the capped LVIS ratio the probabilities give


def _grid_order(num_categories: int, num_shapes: int, num_colours: int) -> np.ndarray:
    """Category index of the k-th smallest count: consecutive k cycle through all shapes and colours."""
    k = np.arange(num_categories)
    shape, colour = k % num_shapes, (k // num_shapes * (num_shapes + 1) + k % num_shapes) % num_colours
    order = shape * num_colours + colour  # synthetic_lt.CATEGORY_NAMES is shape-major
    assert len(set(order.tolist())) == num_categories, "the grid order must be a permutation"
    return order


def lvis_profile(num_categories: int = len(synthetic_lt.CATEGORY_NAMES)) -> Profile:
    """Image counts and instances per image of the scaled-down LVIS v1 profile (deterministic)."""
    table = lvis_v1_train_counts()
    fractions = np.asarray([(table.frequency == group).mean() for group in "rcf"])
    group_sizes = np.floor(fractions * num_categories).astype(int)
    group_sizes[np.argsort(-(fractions * num_categories - group_sizes))[:num_categories - group_sizes.sum()]] += 1
    counts, ratios = [], []
    for group, size in zip("rcf", group_sizes):
        in_group = np.flatnonzero(table.frequency == group)
        by_images = in_group[np.argsort(table.image_count[in_group], kind="stable")]
        picks = by_images[((np.arange(size) + 0.5) / size * len(by_images)).astype(int)]
        counts.append(np.round(profile_image_count(table.image_count[picks])).astype(np.int64))
        ratios.append(table.instance_count[picks] / table.image_count[picks])
    sorted_counts, sorted_ratios = np.concatenate(counts), np.concatenate(ratios)
    order = _grid_order(num_categories, len(synthetic_lt.SHAPES), len(synthetic_lt.COLOURS))
    train_image_counts = np.empty(num_categories, np.int64)
    instances_per_image = np.empty(num_categories)
    train_image_counts[order] = sorted_counts
    instances_per_image[order] = np.minimum(sorted_ratios, MAX_INSTANCES_PER_IMAGE)
    # P(k-th extra instance) so that the expected number of instances is the capped ratio.
    extra = instances_per_image[:, None] - 1 - np.arange(MAX_INSTANCES_PER_IMAGE - 1)[None, :]
    return Profile(train_image_counts, np.clip(extra, 0, 1), instances_per_image)


def profile_image_count(lvis_image_count):
    """Where an LVIS v1 image count lands on this profile: kept up to 100 images (rare and common),
    log-linear from [101, LVIS's largest] onto [101, MAX_FREQUENT_IMAGES] above (frequent)."""
    images = np.asarray(lvis_image_count, dtype=np.float64)
    top = lvis_v1_train_counts().image_count.max()
    frequent = LVIS_FREQUENT_MIN * (MAX_FREQUENT_IMAGES / LVIS_FREQUENT_MIN) ** (
        np.log(np.maximum(images, LVIS_FREQUENT_MIN) / LVIS_FREQUENT_MIN) / np.log(top / LVIS_FREQUENT_MIN))
    return np.where(images < LVIS_FREQUENT_MIN, images, frequent)


def profile_frequency(lvis_frequency: float, num_train_images: int, lvis_num_images: int = NUM_TRAIN_IMAGES) -> float:
    """An image-frequency threshold of LVIS v1 (a fraction of its ``lvis_num_images`` training images, as
    RFS's 1e-3 of all 100,170 or EQL's lambda of the 99,388 annotated ones) as the fraction of this
    profile's ``num_train_images`` that separates the same categories."""
    return float(profile_image_count(lvis_frequency * lvis_num_images)) / num_train_images


def default_root() -> str:
    """Beside synthetic_lt's cache: <its parent>/synthetic_lvis_profile_<version>."""
    return os.path.join(os.path.dirname(synthetic_lt.default_root()), f"{NAME}_{VERSION}")


def generate(root: str) -> None:
    profile = lvis_profile()
    synthetic_lt.generate(root, train_image_counts=profile.train_image_counts,
                          val_images_per_category=VAL_IMAGES_PER_CATEGORY,
                          second_instance_probabilities=profile.second_instance_probabilities)


def ensure_generated(root: str) -> str:
    return synthetic_lt.ensure_generated(root, generator=generate)
