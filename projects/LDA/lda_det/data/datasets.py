"""Registration of the synthetic long-tailed dataset, and a check that datasets are on disk.

LVIS v1 itself ("lvis_v1_train", "lvis_v1_val") is registered by detectron2's builtin
module from $DETECTRON2_DATASETS; nothing here changes that.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import load_lvis_json

from . import synthetic_lt, synthetic_lvis_profile

SYNTHETIC_LT_SPLITS = {"synthetic_lt_train": "train", "synthetic_lt_val": "val"}
# Generated datasets: name -> the function that generates it if needed (ensure_available).
SYNTHETIC_DATASETS = {}


def register_lvis_format(name: str, json_file: str, image_root: str, thing_classes, before_load=None,
                         class_image_count=None) -> None:
    """detectron2's register_lvis_instances for a dataset outside LVIS's built-in metadata.

    Category ids must be 1..C (as in LVIS). ``image_root`` is joined with the split folder
    of each image's coco_url, as detectron2's LVIS loader does. ``before_load`` runs before
    the json is read (the synthetic dataset generates itself there). ``class_image_count``
    (training images per category, in category id order) becomes the metadata of that name,
    in the format of detectron2's builtin LVIS v1 metadata.
    """
    def load():
        if before_load is not None:
            before_load()
        return load_lvis_json(json_file, image_root)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="lvis",
                                  thing_classes=list(thing_classes))
    if class_image_count is not None:
        # detectron2's federated loss (MODEL.ROI_BOX_HEAD.USE_FED_LOSS) samples negative classes by
        # MetadataCatalog.get(DATASETS.TRAIN[0]).class_image_count (data/detection_utils.py:
        # get_fed_loss_cls_weights), which its builtin metadata gives LVIS v1 only.
        MetadataCatalog.get(name).set(class_image_count=[
            {"id": category_id, "image_count": int(count)} for category_id, count in enumerate(class_image_count, 1)])


def register_synthetic_lt(root: str = None) -> None:
    """Register "synthetic_lt_train" / "synthetic_lt_val" like any detectron2 LVIS dataset.

    Nothing is generated here: the first DatasetCatalog.get (or ensure_available) does it.
    """
    root = root or synthetic_lt.default_root()
    for name, split in SYNTHETIC_LT_SPLITS.items():
        # detectron2's LVIS loader appends the split folder to image_root as a string.
        # The json's categories carry these same image counts (synthetic_lt.generate writes them):
        # known here without generating the data.
        register_lvis_format(name, synthetic_lt.json_path(root, split), root + os.sep, synthetic_lt.CATEGORY_NAMES,
                             before_load=lambda: synthetic_lt.ensure_generated(root),
                             class_image_count=synthetic_lt.TRAIN_IMAGE_COUNTS)
        SYNTHETIC_DATASETS[name] = lambda: synthetic_lt.ensure_generated(root)


def register_synthetic_lvis_profile(root: str = None) -> None:
    """Register "synthetic_lvis_profile_train" / "_val": synthetic_lt's images, LVIS v1's class profile."""
    root = root or synthetic_lvis_profile.default_root()
    image_counts = synthetic_lvis_profile.lvis_profile().train_image_counts  # what generate() writes into the json
    for name, split in synthetic_lvis_profile.SPLITS.items():
        register_lvis_format(name, synthetic_lt.json_path(root, split), root + os.sep, synthetic_lt.CATEGORY_NAMES,
                             before_load=lambda: synthetic_lvis_profile.ensure_generated(root),
                             class_image_count=image_counts)
        SYNTHETIC_DATASETS[name] = lambda: synthetic_lvis_profile.ensure_generated(root)


def ensure_available(dataset_name: str) -> None:
    """Generate the synthetic data if needed; for other datasets, fail early and clearly.

    Raises FileNotFoundError naming the missing annotation file or image folder.
    """
    if dataset_name not in DatasetCatalog.list():
        raise KeyError(f"Dataset {dataset_name!r} is not registered; registered LVIS-format ones: "
                       f"{sorted(n for n in DatasetCatalog.list() if 'lvis' in n or 'synthetic' in n)}")
    if dataset_name in SYNTHETIC_DATASETS:
        SYNTHETIC_DATASETS[dataset_name]()
        return
    meta = MetadataCatalog.get(dataset_name)
    hint = (f"dataset {dataset_name!r}: detectron2 looks for its files under $DETECTRON2_DATASETS "
            f"(now {os.environ.get('DETECTRON2_DATASETS', 'unset, i.e. ./datasets')}); see "
            f"https://detectron2.readthedocs.io/en/latest/tutorials/builtin_datasets.html")
    json_file = getattr(meta, "json_file", None)
    if json_file and not os.path.isfile(json_file):
        raise FileNotFoundError(f"Missing annotation file {os.path.abspath(json_file)} for {hint}")
    image_root = getattr(meta, "image_root", None)
    if image_root and not os.path.isdir(image_root):
        raise FileNotFoundError(f"Missing image folder {os.path.abspath(image_root)} for {hint}")
