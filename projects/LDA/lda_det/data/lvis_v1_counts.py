"""The LVIS v1 training-set class counts shipped with lda_det (lvis_v1_train_category_counts.csv).

LDA's balanced weights need n_y of the 1203 LVIS v1 classes; reading them from the 1 GB
lvis_v1_train.json would make an LVIS model unbuildable without the training set. The CSV
(built by projects/LDA/tools/build_lvis_v1_counts.py) carries, per category sorted by LVIS id:
id, name, frequency ("r" / "c" / "f"), image_count, instance_count.
"""
import csv
import functools
import os
from typing import NamedTuple

import numpy as np

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lvis_v1_train_category_counts.csv")
# The registered detectron2 dataset whose counts the table holds.
DATASET_NAME = "lvis_v1_train"
# Images of LVIS v1 train (lvisdataset.org; len(lvis_v1_train.json["images"])): the denominator
# of the category frequencies that repeat-factor sampling uses (tools/loss_scale.py).
NUM_TRAIN_IMAGES = 100170
# Images of LVIS v1 train with at least one annotation: the denominator of EQL's image-count frequency
# f_j = image_count_j / this (the official tables: eqlv2 mmdet/utils/lvis_v1_0_categories.py gives
# image_count / image_count_frequency = 99388 for every class; eql.detectron2 counts
# len(set(image_id of the annotations)) for v0.5).
NUM_ANNOTATED_TRAIN_IMAGES = 99388


class CategoryCounts(NamedTuple):
    """Columns of the table, index i = contiguous class id i (LVIS id i + 1)."""

    ids: np.ndarray
    names: tuple
    frequency: np.ndarray  # "r" / "c" / "f"
    image_count: np.ndarray
    instance_count: np.ndarray


@functools.lru_cache(maxsize=None)
def lvis_v1_train_counts() -> CategoryCounts:
    """The shipped table; raises ValueError naming the file and line if it is malformed."""
    ids, names, frequency, image_count, instance_count = [], [], [], [], []
    with open(TABLE_PATH, newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                ids.append(int(row["id"]))
                names.append(row["name"])
                frequency.append(row["frequency"])
                image_count.append(int(row["image_count"]))
                instance_count.append(int(row["instance_count"]))
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{TABLE_PATH}:{line}: malformed row {row} ({error})") from error
    if ids != list(range(1, len(ids) + 1)) or not set(frequency) <= {"r", "c", "f"}:
        raise ValueError(f"{TABLE_PATH}: ids must be 1..C in order and frequencies r/c/f")
    counts = CategoryCounts(np.asarray(ids), tuple(names), np.asarray(frequency),
                            np.asarray(image_count, dtype=np.int64), np.asarray(instance_count, dtype=np.int64))
    for array in (counts.ids, counts.frequency, counts.image_count, counts.instance_count):
        array.setflags(write=False)  # cached and shared: nobody may edit it in place
    return counts
