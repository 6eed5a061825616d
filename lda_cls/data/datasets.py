"""Long-tailed classification datasets, built by name from the config.

Every builder returns ``(dataset, num_classes)`` for one split ("train", "val",
"test"); datasets expose ``targets`` (list of int). ``dataset`` is None for "val"
where the data has no validation split (CIFAR, image folders without ``val/``). ``load_images=False`` lists
the labels only (``lda_cls.stats`` never decodes an image).

Images come out as uint8 CHW tensors; normalisation and the cheap augmentations
run on whole batches on the device (see ``transforms.BatchPreprocess``).
"""
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from fvcore.common.registry import Registry
from PIL import Image
from torch.utils.data import Dataset

from lda_common.atomic_files import atomic_save
from lda_common.checkpoint_io import load_checkpoint

from .file_check import check_files_exist
from .places365 import places365_release_path, resolve_places_layout
from .profile import check_imbalance_ratio, subsample_long_tail

__all__ = ["DATASET_REGISTRY", "build_dataset", "TensorImageDataset", "FileListDataset",
           "parse_split_file", "scan_image_folder", "IMAGE_EXTENSIONS"]

DATASET_REGISTRY = Registry("DATASET")
DATASET_REGISTRY.__doc__ = "Builders fn(cfg, split, load_images) -> (Dataset with .targets, num_classes)."

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")


class TensorImageDataset(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W)."""

    def __init__(self, images: Optional[torch.Tensor], targets: Sequence[int]):
        self.images = images
        self.targets = [int(t) for t in targets]
        if images is not None and len(images) != len(self.targets):
            raise ValueError(f"{len(images)} images but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


class FileListDataset(Dataset):
    """Images read from files; ``transform`` maps a PIL image to a uint8 CHW tensor."""

    def __init__(self, root: str, samples: List[Tuple[str, int]], transform=None):
        self.root = root
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        full_path = os.path.join(self.root, path)
        try:
            with Image.open(full_path) as image:
                image = image.convert("RGB")
        except Exception as error:  # PIL raises several types; the path is what the user needs
            raise RuntimeError(f"cannot read image {full_path}: {error}") from error
        return self.transform(image), label


def _require_dir(path: str, what: str) -> None:
    if not path:
        raise ValueError(f"{what} is not set (DATASET.ROOT)")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} does not exist: {path}")


def _class_images(class_dir: str) -> List[str]:
    """Image paths under a class folder, relative to it, nested folders included, in torchvision
    ImageFolder's order (``sorted(os.walk(..., followlinks=True))``, file names sorted in each folder)."""
    files = []
    for root, _, names in sorted(os.walk(class_dir, followlinks=True)):
        relative = os.path.relpath(root, class_dir)
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(root, name)):
                files.append(name if relative == "." else os.path.join(relative, name))
    return files


def scan_image_folder(directory: str) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(class names, [(relative path, label)]) of a ``<class>/.../<image>`` tree, classes sorted.

    As torchvision's ImageFolder: an image in a nested folder of a class folder belongs to that class."""
    _require_dir(directory, "image folder")
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise ValueError(f"image folder {directory} has no class sub-folders")
    samples = []
    for label, name in enumerate(classes):
        files = _class_images(os.path.join(directory, name))
        if not files:  # a zero-image class would skew the imbalance ratio and the shot groups
            raise ValueError(f"class folder {os.path.join(directory, name)} has no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add its images")
        samples.extend((os.path.join(name, f), label) for f in files)
    return classes, samples


def parse_split_file(path: str, num_classes: int = 0) -> List[Tuple[str, int]]:
    """Read an OLTR split file: one ``relative/path label`` per line (blank lines skipped)."""
    if not path:
        raise ValueError("split file path is empty (DATASET.*_SPLIT_FILE)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file not found: {path}")
    samples = []
    with open(path, "r") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{line_number}: expected 'relative/path label', got {line.rstrip()!r}")
            try:
                label = int(fields[1])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: label {fields[1]!r} is not an integer") from None
            if label < 0 or (num_classes > 0 and label >= num_classes):
                raise ValueError(f"{path}:{line_number}: label {label} outside [0, {num_classes})")
            samples.append((fields[0], label))
    if not samples:
        raise ValueError(f"split file {path} lists no images")
    return samples


def _subsample(targets: Sequence[int], num_classes: int, cfg, split: str,
               class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Indices of the long-tailed training subset, or all indices for IR 1 / other splits."""
    if split != "train" or cfg.DATASET.IMBALANCE_RATIO == 1:
        return np.arange(len(targets))
    return subsample_long_tail(targets, num_classes, cfg.DATASET.IMBALANCE_RATIO, seed=cfg.DATASET.SUBSAMPLE_SEED,
                               class_names=class_names)


def _decode_folder(directory: str, samples: List[Tuple[str, int]], cache_file: str) -> torch.Tensor:
    """Decode all images of a small-image folder into one uint8 tensor, cached on disk."""
    if cache_file and os.path.isfile(cache_file):
        cached = load_checkpoint(cache_file)  # weights_only: a cache file planted there runs nothing
        if cached["paths"] == [p for p, _ in samples]:
            return cached["images"]
    images = []
    for path, _ in samples:
        full_path = os.path.join(directory, path)
        try:
            with Image.open(full_path) as image:
                array = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise RuntimeError(f"cannot read image {full_path}: {error}") from error
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) != 1:
        raise ValueError(f"images under {directory} have different sizes {sorted(sizes)[:3]}; "
                         "CIFAR-style datasets need one size")
    tensor = torch.stack(images)
    if cache_file:
        os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
        # Parallel runs may build the same cache: each writes its own temporary, then renames.
        atomic_save({"paths": [p for p, _ in samples], "images": tensor}, cache_file)
    return tensor


def _cifar(cfg, split: str, load_images: bool, num_classes: int):
    if split == "val":
        return None, num_classes  # CIFAR has no validation split
    root = cfg.DATASET.ROOT
    folder_split = cfg.DATASET.TRAIN_DIR if split == "train" else cfg.DATASET.TEST_DIR
    if root and os.path.isdir(os.path.join(root, folder_split)):
        directory = os.path.join(root, folder_split)
        classes, samples = scan_image_folder(directory)
        if len(classes) != num_classes:
            raise ValueError(f"{directory} has {len(classes)} class folders, expected {num_classes}")
        keep = _subsample([label for _, label in samples], num_classes, cfg, split, classes)
        samples = [samples[i] for i in keep]
        images = None
        if load_images:
            cache = ""
            if cfg.DATASET.CACHE_DIR:
                tag = f"{os.path.abspath(directory).strip(os.sep).replace(os.sep, '_')}_{split}"
                if split == "train":
                    tag += f"_ir{cfg.DATASET.IMBALANCE_RATIO:g}_seed{cfg.DATASET.SUBSAMPLE_SEED}"
                cache = os.path.join(cfg.DATASET.CACHE_DIR, tag + ".pt")
            images = _decode_folder(directory, samples, cache)
        return TensorImageDataset(images, [label for _, label in samples]), num_classes
    if not root:
        raise ValueError(f"{cfg.DATASET.NAME}: set DATASET.ROOT (a download directory or an image-folder "
                         f"tree with {cfg.DATASET.TRAIN_DIR}/<class>/ and {cfg.DATASET.TEST_DIR}/<class>/)")
    if not cfg.DATASET.DOWNLOAD and not os.path.isdir(root):
        raise FileNotFoundError(f"{cfg.DATASET.NAME}: data root does not exist: {root}")
    import torchvision

    dataset_class = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
    try:
        base = dataset_class(root, train=(split == "train"), download=cfg.DATASET.DOWNLOAD)
    except RuntimeError as error:
        raise FileNotFoundError(f"{cfg.DATASET.NAME}: no CIFAR data under {root} ({error})") from error
    keep = _subsample(base.targets, num_classes, cfg, split)
    images = torch.from_numpy(base.data[keep]).permute(0, 3, 1, 2).contiguous() if load_images else None
    return TensorImageDataset(images, [base.targets[i] for i in keep]), num_classes


@DATASET_REGISTRY.register()
def cifar10_lt(cfg, split: str, load_images: bool = True):
    """Long-tailed CIFAR-10; the test split is the full balanced test set."""
    return _cifar(cfg, split, load_images, 10)


@DATASET_REGISTRY.register()
def cifar100_lt(cfg, split: str, load_images: bool = True):
    """Long-tailed CIFAR-100; the test split is the full balanced test set."""
    return _cifar(cfg, split, load_images, 100)


@DATASET_REGISTRY.register()
def digits_lt(cfg, split: str, load_images: bool = True):
    """scikit-learn's 8x8 handwritten digits: balanced held-out test and validation sets, a long-tailed training set.

    DIGITS_TEST_PER_CLASS images of each class (seeded) are the test set, the
    next DIGITS_VAL_PER_CLASS the validation set (model selection); the remaining
    pool is subsampled with the exponential profile, n_max = the smallest pool,
    so every class can fill its quota. The three sets are disjoint.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    targets = digits.target.astype(np.int64)
    num_classes = 10
    rng = np.random.RandomState(cfg.DATASET.SUBSAMPLE_SEED)
    per_class = int(cfg.DATASET.DIGITS_TEST_PER_CLASS)
    val_per_class = int(cfg.DATASET.DIGITS_VAL_PER_CLASS)
    test_index, val_index, pool_index = [], [], []
    for class_index in range(num_classes):
        members = rng.permutation(np.flatnonzero(targets == class_index))
        test_index.append(members[:per_class])
        # Taken after the test images, so the test set does not depend on the validation size.
        val_index.append(members[per_class:per_class + val_per_class])
        pool_index.append(members[per_class + val_per_class:])
    if split == "train":
        pool = np.concatenate(pool_index)
        n_max = min(len(p) for p in pool_index)
        if cfg.DATASET.IMBALANCE_RATIO != 1:
            keep = pool[subsample_long_tail(targets[pool], num_classes, cfg.DATASET.IMBALANCE_RATIO,
                                            seed=cfg.DATASET.SUBSAMPLE_SEED, n_max=n_max)]
        else:
            keep = np.sort(pool)
    elif split == "val":
        if val_per_class <= 0:
            return None, num_classes
        keep = np.sort(np.concatenate(val_index))
    else:
        keep = np.sort(np.concatenate(test_index))
    images = None
    if load_images:
        # 0..16 grey levels -> 0..255, one channel.
        pixels = np.clip(digits.images[keep] * 16, 0, 255).astype(np.uint8)
        images = torch.from_numpy(pixels).unsqueeze(1).contiguous()
    return TensorImageDataset(images, targets[keep].tolist()), num_classes


def _split_file_dataset(cfg, split: str, load_images: bool, default_classes: int):
    from .transforms import build_file_transform

    root = cfg.DATASET.ROOT
    if load_images:  # label statistics need the split file only
        _require_dir(root, f"{cfg.DATASET.NAME} image root")
    split_file = {"train": cfg.DATASET.TRAIN_SPLIT_FILE, "val": cfg.DATASET.VAL_SPLIT_FILE,
                  "test": cfg.DATASET.TEST_SPLIT_FILE}[split]
    num_classes = cfg.DATASET.NUM_CLASSES or default_classes
    samples = parse_split_file(split_file, num_classes)
    transform = None
    if load_images:
        source = f"{cfg.DATASET.NAME} {split} split {split_file}"
        if cfg.DATASET.NAME == "places_lt":
            layout = resolve_places_layout(root, samples, cfg.DATASET.PLACES_LAYOUT, source)
            if layout == "release":
                samples = [(places365_release_path(path), label) for path, label in samples]
            source += f" (Places-365 layout {layout!r})"
        check_files_exist(root, [path for path, _ in samples], source)  # now, not after the training epochs
        transform = build_file_transform(cfg, train=(split == "train"))
    return FileListDataset(root, samples, transform), num_classes


@DATASET_REGISTRY.register()
def imagenet_lt(cfg, split: str, load_images: bool = True):
    """ImageNet-LT (Liu et al. 2019): ImageNet_LT_{train,val,test}.txt under the ImageNet root."""
    return _split_file_dataset(cfg, split, load_images, 1000)


@DATASET_REGISTRY.register()
def places_lt(cfg, split: str, load_images: bool = True):
    """Places-LT (Liu et al. 2019): Places_LT_{train,val,test}.txt under the Places-365 root
    in either layout of ``places365`` (DATASET.PLACES_LAYOUT)."""
    return _split_file_dataset(cfg, split, load_images, 365)


@DATASET_REGISTRY.register()
def imagefolder_lt(cfg, split: str, load_images: bool = True):
    """Any ``<root>/<TRAIN_DIR|VAL_DIR|TEST_DIR>/<class>/<image>`` tree (VAL_DIR optional); IR > 1 subsamples
    the training split."""
    from .transforms import build_file_transform

    _require_dir(cfg.DATASET.ROOT, "imagefolder_lt root")
    split_dirs = {"train": cfg.DATASET.TRAIN_DIR, "val": cfg.DATASET.VAL_DIR, "test": cfg.DATASET.TEST_DIR}
    directory = os.path.join(cfg.DATASET.ROOT, split_dirs[split])
    if split == "val" and not (cfg.DATASET.VAL_DIR and os.path.isdir(directory)):
        classes, _ = scan_image_folder(os.path.join(cfg.DATASET.ROOT, cfg.DATASET.TRAIN_DIR))
        return None, len(classes)
    classes, samples = scan_image_folder(directory)
    if split != "train":
        train_classes, _ = scan_image_folder(os.path.join(cfg.DATASET.ROOT, cfg.DATASET.TRAIN_DIR))
        if classes != train_classes:
            raise ValueError(f"class folders of {directory} differ from those of the training split")
    num_classes = len(classes)
    if cfg.DATASET.NUM_CLASSES and cfg.DATASET.NUM_CLASSES != num_classes:
        raise ValueError(f"{directory} has {num_classes} class folders, "
                         f"DATASET.NUM_CLASSES is {cfg.DATASET.NUM_CLASSES}")
    keep = _subsample([label for _, label in samples], num_classes, cfg, split, classes)
    samples = [samples[i] for i in keep]
    transform = build_file_transform(cfg, train=(split == "train")) if load_images else None
    return FileListDataset(directory, samples, transform), num_classes


def build_dataset(cfg, split: str, load_images: bool = True):
    """(dataset, num_classes) of ``split`` in {"train", "val", "test"} for cfg.DATASET.NAME.

    Datasets without a validation split (CIFAR, image folders without VAL_DIR) return (None, num_classes)
    for "val": the caller must not select a model on the test split in its place.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_imbalance_ratio(cfg.DATASET.IMBALANCE_RATIO)
    name = cfg.DATASET.NAME
    if name not in DATASET_REGISTRY:
        raise KeyError(f"unknown DATASET.NAME {name!r}; registered: {sorted(k for k, _ in DATASET_REGISTRY)}")
    return DATASET_REGISTRY.get(name)(cfg, split, load_images)
