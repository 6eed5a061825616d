"""Datasets, the long-tail profile and the augmentations of lda_cls."""
from .datasets import (DATASET_REGISTRY, FileListDataset, TensorImageDataset, build_dataset,
                       parse_split_file, scan_image_folder)
from .device_batches import DeviceBatches
from .profile import SHOT_NAMES, long_tail_counts, shot_groups, subsample_long_tail
from .transforms import BatchPreprocess, build_file_transform

__all__ = ["DATASET_REGISTRY", "DeviceBatches", "FileListDataset", "TensorImageDataset", "build_dataset",
           "parse_split_file", "scan_image_folder", "SHOT_NAMES", "long_tail_counts", "shot_groups", "subsample_long_tail",
           "BatchPreprocess", "build_file_transform", "build_datasets", "class_counts_of"]


def class_counts_of(dataset, num_classes: int):
    """Per-class image counts of a dataset with ``targets``."""
    import numpy as np

    return np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=num_classes).tolist()


def build_datasets(cfg, load_images: bool = True):
    """(train, test, class_counts): the training set, the reported test set, n_y of the training set."""
    train, num_classes = build_dataset(cfg, "train", load_images)
    test, _ = build_dataset(cfg, "test", load_images)
    return train, test, class_counts_of(train, num_classes)
