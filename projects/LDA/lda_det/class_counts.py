"""Class counts n_y of the training set, the input of LDA's balanced weights (Eq. 5).

Computed once, when the box predictor is built, from the datasets registered in
detectron2's DatasetCatalog / MetadataCatalog (cfg.DATASETS.TRAIN).
"""
import logging
from typing import Iterable, List, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from .data import ensure_available

logger = logging.getLogger(__name__)

SOURCES = ("instance_count", "image_count", "config")


def instance_counts(dataset_dicts: Iterable[dict], num_classes: int) -> np.ndarray:
    """Number of annotations of each class (contiguous ids 0..C-1)."""
    class_ids = [ann["category_id"] for record in dataset_dicts for ann in record.get("annotations", [])]
    return _bincount(class_ids, num_classes)


def image_counts(dataset_dicts: Iterable[dict], num_classes: int) -> np.ndarray:
    """Number of images that contain at least one annotation of each class."""
    class_ids = [c for record in dataset_dicts
                 for c in {ann["category_id"] for ann in record.get("annotations", [])}]
    return _bincount(class_ids, num_classes)


def _bincount(class_ids: List[int], num_classes: int) -> np.ndarray:
    class_ids = np.asarray(class_ids, dtype=np.int64)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= num_classes):
        raise ValueError(f"annotation category_id outside [0, {num_classes}): "
                         f"min {class_ids.min()}, max {class_ids.max()}; check MODEL.ROI_HEADS.NUM_CLASSES")
    return np.bincount(class_ids, minlength=num_classes)


def _metadata_image_counts(dataset_name: str, num_classes: int):
    """LVIS's own `image_count` per category, when the dataset's metadata carries it (LVIS v1)."""
    meta = MetadataCatalog.get(dataset_name)
    if not hasattr(meta, "class_image_count"):
        return None
    entries = sorted(meta.class_image_count, key=lambda entry: entry["id"])
    if len(entries) != num_classes:
        raise ValueError(f"{dataset_name}: metadata class_image_count has {len(entries)} classes, "
                         f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}")
    return np.asarray([entry["image_count"] for entry in entries], dtype=np.int64)


def class_counts_from_config(cfg) -> List[int]:
    """n_y for every class, from the source named by MODEL.LDA.CLASS_COUNT_SOURCE."""
    source = cfg.MODEL.LDA.CLASS_COUNT_SOURCE
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if source not in SOURCES:
        raise ValueError(f"MODEL.LDA.CLASS_COUNT_SOURCE must be one of {SOURCES}, got {source!r}")
    if source == "config":
        counts = np.asarray(cfg.MODEL.LDA.CLASS_COUNTS, dtype=np.int64)
        if counts.shape != (num_classes,):
            raise ValueError(f"MODEL.LDA.CLASS_COUNTS has {counts.size} entries, "
                             f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}")
        return counts.tolist()
    return sum_over_datasets(cfg.DATASETS.TRAIN, source, num_classes).tolist()


def sum_over_datasets(dataset_names: Sequence[str], source: str, num_classes: int) -> np.ndarray:
    if not dataset_names:
        raise ValueError(f"MODEL.LDA.CLASS_COUNT_SOURCE={source!r} needs DATASETS.TRAIN to be set")
    total = np.zeros(num_classes, dtype=np.int64)
    for name in dataset_names:
        counts = _metadata_image_counts(name, num_classes) if source == "image_count" else None
        if counts is None:
            ensure_available(name)
            dicts = DatasetCatalog.get(name)
            counts = (instance_counts if source == "instance_count" else image_counts)(dicts, num_classes)
        total += counts
    logger.info(f"LDA class counts ({source}) from {list(dataset_names)}: {num_classes} classes, "
                f"min {total.min()}, median {int(np.median(total))}, max {total.max()}, "
                f"{int((total == 0).sum())} absent")
    return total
