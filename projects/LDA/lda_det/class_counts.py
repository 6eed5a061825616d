"""Class counts n_y of the training set, the input of LDA's balanced weights (Eq. 5).

Computed once, when the box predictor is built: for LVIS v1 from the table shipped with
lda_det (data/lvis_v1_counts.py), otherwise from the datasets registered in detectron2's
DatasetCatalog / MetadataCatalog (cfg.DATASETS.TRAIN), on rank 0 only, then broadcast.
When the training data is not on disk (inference), the model is built without them and
takes them from the checkpoint (LDAOutputLayers keeps them in a persistent buffer).
"""
import logging
import os
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch.distributed as dist
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from .data import SYNTHETIC_DATASETS, ensure_available, lvis_v1_counts

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


def _shipped_counts(dataset_name: str, source: str, num_classes: int) -> Optional[np.ndarray]:
    """LVIS v1's counts from the table shipped with lda_det, without its 1 GB json."""
    if dataset_name != lvis_v1_counts.DATASET_NAME or num_classes != 1203:
        return None
    table = lvis_v1_counts.lvis_v1_train_counts()
    return (table.instance_count if source == "instance_count" else table.image_count).copy()


def _on_disk(dataset_name: str) -> bool:
    """Whether counting ``dataset_name`` would find its files (generating nothing)."""
    meta = MetadataCatalog.get(dataset_name)
    json_file = getattr(meta, "json_file", None)
    if dataset_name in SYNTHETIC_DATASETS:
        # Generated on first use, deterministically and in seconds: counting them generates them, so that
        # train_net.py, model_zoo.get and the benchmarks work from an empty cache.
        return True
    return not json_file or os.path.isfile(json_file)


def check_count_source(cfg) -> None:
    """MODEL.LDA.CLASS_COUNTS is read only with CLASS_COUNT_SOURCE "config": counts given under another
    source would be silently replaced by the dataset's, so that combination is refused."""
    lda = cfg.MODEL.LDA
    if lda.CLASS_COUNT_SOURCE != "config" and len(lda.CLASS_COUNTS):
        raise ValueError(f"MODEL.LDA.CLASS_COUNTS is set ({len(lda.CLASS_COUNTS)} counts) but "
                         f"MODEL.LDA.CLASS_COUNT_SOURCE is {lda.CLASS_COUNT_SOURCE!r}, which counts DATASETS.TRAIN "
                         f"instead: set MODEL.LDA.CLASS_COUNT_SOURCE config to use them, or MODEL.LDA.CLASS_COUNTS "
                         f"[] to count the dataset")


def class_counts_for_model(cfg) -> Optional[List[int]]:
    """n_y for the LDA head being built, or None when the training data is not at hand.

    Shipped (LVIS v1) and config counts always; otherwise DATASETS.TRAIN's counts if its files
    are on disk. Under torch.distributed rank 0 reads them and broadcasts them (the other
    ranks read nothing), and a failure on rank 0 is raised on every rank instead of a hang.
    """
    check_count_source(cfg)  # on every rank, before the counts are read

    def read():
        lda = cfg.MODEL.LDA
        if lda.CLASS_COUNT_SOURCE != "config" and cfg.DATASETS.TRAIN and not all(
                _shipped_counts(n, lda.CLASS_COUNT_SOURCE, cfg.MODEL.ROI_HEADS.NUM_CLASSES) is not None
                or _on_disk(n) for n in cfg.DATASETS.TRAIN if n in DatasetCatalog.list()):
            logger.info(f"LDA class counts: files of DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} are not on disk; "
                        f"the model takes n_y from its checkpoint (enough for inference, required for training)")
            return None
        return class_counts_from_config(cfg)

    return _read_on_main_process(read, "LDA class counts")


def _read_on_main_process(read, what: str):
    """``read()`` on rank 0, broadcast to the other ranks (which read nothing); a failure on
    rank 0 is raised on every rank instead of a hang."""
    if comm.get_world_size() == 1:
        return read()
    message = [None]
    if comm.is_main_process():
        try:
            message = [("counts", read())]
        except Exception as error:  # sent to the other ranks, raised everywhere below
            message = [("error", f"{type(error).__name__}: {error}")]
    dist.broadcast_object_list(message, src=0)
    kind, value = message[0]
    if kind == "error":
        raise RuntimeError(f"rank 0 could not read the {what}: {value}")
    return value


def image_frequency_for_model(cfg) -> Optional[Tuple[List[int], int]]:
    """EQL's class frequencies as (images containing each class, images with an annotation) of
    DATASETS.TRAIN, f_j = first / second; None when the training files are not on disk (the
    model then takes them from its checkpoint). LVIS v1 from the shipped table, without its json.
    Read on rank 0 and broadcast, as class_counts_for_model."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES

    def read():
        names = list(cfg.DATASETS.TRAIN)
        if not names or not all(_shipped_counts(n, "image_count", num_classes) is not None or _on_disk(n)
                                for n in names if n in DatasetCatalog.list()):
            logger.info(f"Class frequencies: DATASETS.TRAIN {names} is empty or not on disk; "
                        f"the model takes them from its checkpoint (enough for inference, required for training)")
            return None
        counts, images = np.zeros(num_classes, dtype=np.int64), 0
        for name in names:
            shipped = _shipped_counts(name, "image_count", num_classes)
            if shipped is not None:
                counts, images = counts + shipped, images + lvis_v1_counts.NUM_ANNOTATED_TRAIN_IMAGES
                continue
            ensure_available(name)
            dicts = DatasetCatalog.get(name)  # loaded once for both numbers
            counts = counts + image_counts(dicts, num_classes)
            images += sum(1 for record in dicts if record.get("annotations"))
        logger.info(f"Class frequencies (image counts / {images} annotated images) of {names}: "
                    f"min {counts.min()}, max {counts.max()}")
        return counts.tolist(), images

    return _read_on_main_process(read, "class frequencies")


def class_counts_from_config(cfg) -> List[int]:
    """n_y for every class, from the source named by MODEL.LDA.CLASS_COUNT_SOURCE."""
    source = cfg.MODEL.LDA.CLASS_COUNT_SOURCE
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if source not in SOURCES:
        raise ValueError(f"MODEL.LDA.CLASS_COUNT_SOURCE must be one of {SOURCES}, got {source!r}")
    check_count_source(cfg)
    if source == "config":
        counts = np.asarray(cfg.MODEL.LDA.CLASS_COUNTS, dtype=np.int64)
        if counts.shape != (num_classes,):
            raise ValueError(f"MODEL.LDA.CLASS_COUNTS has {counts.size} entries, "
                             f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}")
        return counts.tolist()
    if source == "instance_count" and cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER:
        drawn, note = sampled_instance_counts(cfg, num_classes)
        if drawn is not None:
            present = sum_over_datasets(cfg.DATASETS.TRAIN, source, num_classes) > 0
            # Expected instances per epoch, rounded: >= 1 for every class that has an instance (r >= 1).
            counts = np.where(present, np.maximum(np.rint(drawn), 1), 0).astype(np.int64)
            logger.info(f"LDA class counts under the training sampler ({note}): min {counts[present].min()}, "
                        f"max {counts.max()}")
            return counts.tolist()
    return sum_over_datasets(cfg.DATASETS.TRAIN, source, num_classes).tolist()


def sampled_instance_counts(cfg, num_classes: int) -> Tuple[Optional[np.ndarray], str]:
    """(expected instances of each class drawn per epoch by the training sampler, how they were computed).

    With RepeatFactorTrainingSampler an image is drawn r(image) times per epoch (detectron2's repeat
    factors, from image counts), so each of its annotations counts r(image) times; without it, the
    plain instance counts. For the shipped LVIS v1 table (no per-image data) each class's own repeat
    factor r(c) stands in for r(image) >= r(c): a lower bound. None for MODEL.LDA.CLASS_COUNTS.
    """
    from detectron2.data.samplers import RepeatFactorTrainingSampler

    rfs = cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    threshold = cfg.DATALOADER.REPEAT_THRESHOLD
    if tuple(cfg.DATASETS.TRAIN) == (lvis_v1_counts.DATASET_NAME,) and num_classes == 1203:
        table = lvis_v1_counts.lvis_v1_train_counts()
        counts = table.instance_count.astype(np.float64)
        note = "LVIS v1 table shipped with lda_det"
        if rfs:
            frequency = table.image_count / lvis_v1_counts.NUM_TRAIN_IMAGES
            repeat = np.maximum(1.0, np.sqrt(threshold / frequency) if cfg.DATALOADER.REPEAT_SQRT
                                else threshold / frequency)
            counts = counts * repeat
            note += (f", repeat factors r(c) = max(1, sqrt({threshold} / f_c)) of each class "
                     f"(a lower bound of r(image))")
        return counts, note
    if cfg.MODEL.LDA.CLASS_COUNT_SOURCE == "config" or not cfg.DATASETS.TRAIN:
        return None, "MODEL.LDA.CLASS_COUNTS: no images, sampled instances taken proportional to n_y"
    counts = np.zeros(num_classes)
    for name in cfg.DATASETS.TRAIN:
        ensure_available(name)
        dicts = DatasetCatalog.get(name)
        if rfs:
            repeat = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
                dicts, threshold, sqrt=cfg.DATALOADER.REPEAT_SQRT).numpy()
        else:
            repeat = np.ones(len(dicts))
        for record, factor in zip(dicts, repeat):
            counts += factor * instance_counts([record], num_classes)
    note = f"instances of {list(cfg.DATASETS.TRAIN)}" + (
        f", each weighted by its image's repeat factor (threshold {threshold}, exact)" if rfs else "")
    return counts, note


def sum_over_datasets(dataset_names: Sequence[str], source: str, num_classes: int) -> np.ndarray:
    if not dataset_names:
        raise ValueError(f"MODEL.LDA.CLASS_COUNT_SOURCE={source!r} needs DATASETS.TRAIN to be set")
    total = np.zeros(num_classes, dtype=np.int64)
    for name in dataset_names:
        counts = _shipped_counts(name, source, num_classes)
        if counts is None and source == "image_count":
            counts = _metadata_image_counts(name, num_classes)
        if counts is None:
            ensure_available(name)
            dicts = DatasetCatalog.get(name)
            counts = (instance_counts if source == "instance_count" else image_counts)(dicts, num_classes)
        total += counts
    logger.info(f"LDA class counts ({source}) from {list(dataset_names)}: {num_classes} classes, "
                f"min {total.min()}, median {int(np.median(total))}, max {total.max()}, "
                f"{int((total == 0).sum())} absent")
    return total
