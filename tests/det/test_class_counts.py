"""Class counts n_y from registered datasets, and the synthetic dataset's statistics."""
import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from lda_det.class_counts import class_counts_from_config, image_counts, instance_counts
from lda_det.data import synthetic_lt

from .conftest import tiny_cfg

DICTS = [
    {"annotations": [{"category_id": 0}, {"category_id": 0}, {"category_id": 2}]},
    {"annotations": [{"category_id": 0}]},
    {"annotations": []},
    {"annotations": [{"category_id": 2}, {"category_id": 2}, {"category_id": 2}]},
]


def test_counts_of_hand_made_dicts():
    assert instance_counts(DICTS, 4).tolist() == [3, 0, 4, 0]
    assert image_counts(DICTS, 4).tolist() == [2, 0, 2, 0]
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        instance_counts(DICTS, 2)


@pytest.fixture
def registered_tiny_dataset():
    name = "lda_test_tiny_counts"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DICTS)
    yield name


def _cfg(train, source, num_classes=4, counts=()):
    cfg = tiny_cfg()
    cfg.DATASETS.TRAIN = tuple(train)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.LDA.CLASS_COUNT_SOURCE = source
    cfg.MODEL.LDA.CLASS_COUNTS = list(counts)
    return cfg


def test_sources(registered_tiny_dataset):
    name = registered_tiny_dataset
    assert class_counts_from_config(_cfg([name], "instance_count")) == [3, 0, 4, 0]
    assert class_counts_from_config(_cfg([name], "image_count")) == [2, 0, 2, 0]
    assert class_counts_from_config(_cfg([name, name], "instance_count")) == [6, 0, 8, 0]
    assert class_counts_from_config(_cfg([], "config", counts=[5, 6, 7, 8])) == [5, 6, 7, 8]
    with pytest.raises(ValueError, match="MODEL.LDA.CLASS_COUNTS has 2 entries"):
        class_counts_from_config(_cfg([], "config", counts=[5, 6]))
    with pytest.raises(ValueError, match="CLASS_COUNT_SOURCE"):
        class_counts_from_config(_cfg([name], "images"))


def test_image_count_from_lvis_metadata():
    name = "lda_test_meta_counts"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: pytest.fail("must not load the dataset"))
        # LVIS v1's metadata layout (detectron2's lvis_v1_category_image_count.py), unsorted.
        MetadataCatalog.get(name).set(class_image_count=[{"id": 2, "image_count": 7}, {"id": 1, "image_count": 9}])
    assert class_counts_from_config(_cfg([name], "image_count", num_classes=2)) == [9, 7]


def test_lvis_v1_metadata_has_1203_image_counts():
    counts = class_counts_from_config(_cfg(["lvis_v1_train"], "image_count", num_classes=1203))
    assert len(counts) == 1203 and min(counts) >= 1


def test_missing_lvis_names_the_file_but_its_counts_are_shipped():
    from lda_det.data import ensure_available
    from lda_det.data.lvis_v1_counts import lvis_v1_train_counts
    if MetadataCatalog.get("lvis_v1_train").json_file and __import__("os").path.isfile(
            MetadataCatalog.get("lvis_v1_train").json_file):
        pytest.skip("LVIS v1 is installed here")
    with pytest.raises(FileNotFoundError, match="lvis_v1_train.json"):
        ensure_available("lvis_v1_train")
    counts = class_counts_from_config(_cfg(["lvis_v1_train"], "instance_count", num_classes=1203))
    assert counts == lvis_v1_train_counts().instance_count.tolist()


def test_missing_annotation_file_is_named(tmp_path):
    from lda_det.class_counts import class_counts_for_model
    from lda_det.data import register_lvis_format
    name = "lda_test_missing_json"
    if name not in DatasetCatalog.list():
        register_lvis_format(name, str(tmp_path / "absent_train.json"), str(tmp_path), ["a", "b", "c", "d"])
    with pytest.raises(FileNotFoundError, match="absent_train.json"):
        class_counts_from_config(_cfg([name], "instance_count"))
    assert class_counts_for_model(_cfg([name], "instance_count")) is None  # inference: from the checkpoint


def test_synthetic_dataset_is_long_tailed_lvis(synthetic_root):
    with open(synthetic_lt.json_path(synthetic_root, "train")) as f:
        data = json.load(f)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    assert len(categories) >= 20
    groups = {"r": (1, 10), "c": (11, 100), "f": (101, 10 ** 9)}
    for category in categories:
        low, high = groups[category["frequency"]]
        assert low <= category["image_count"] <= high
    assert {c["frequency"] for c in categories} == {"r", "c", "f"}
    # The json's counts are the data's counts, and what LDA computes from the registered set.
    dicts = DatasetCatalog.get("synthetic_lt_train")
    num_classes = len(categories)
    assert image_counts(dicts, num_classes).tolist() == [c["image_count"] for c in categories]
    assert instance_counts(dicts, num_classes).tolist() == [c["instance_count"] for c in categories]
    cfg = tiny_cfg()
    assert class_counts_from_config(cfg) == [c["instance_count"] for c in categories]
    # Every image lists the categories it does not contain as verified negatives.
    present = {}
    for ann in data["annotations"]:
        present.setdefault(ann["image_id"], set()).add(ann["category_id"])
    for image in data["images"]:
        assert set(image["neg_category_ids"]) == set(range(1, num_classes + 1)) - present[image["id"]]


def test_generation_is_deterministic(synthetic_root, tmp_path):
    synthetic_lt.generate(str(tmp_path))
    for split in ("train", "val"):
        with open(synthetic_lt.json_path(str(tmp_path), split)) as f, \
                open(synthetic_lt.json_path(synthetic_root, split)) as g:
            assert json.load(f) == json.load(g)
    first = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "train" / "000001.png"))
    cached = np.asarray(__import__("PIL.Image").Image.open(f"{synthetic_root}/train/000001.png"))
    assert np.array_equal(first, cached)


def test_counts_under_the_repeat_factor_sampler(registered_tiny_dataset):
    """n_y as RepeatFactorTrainingSampler draws the instances: each image's annotations r(image) times."""
    cfg = _cfg([registered_tiny_dataset], "instance_count")
    cfg.DATALOADER.SAMPLER_TRAIN = "RepeatFactorTrainingSampler"
    cfg.DATALOADER.REPEAT_THRESHOLD = 1.0
    cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER = True
    # 4 images; class 0 in 2 of them (f = 1/2), class 2 in 2 (f = 1/2): r(c) = max(1, sqrt(1 / (1/2))) = sqrt(2)
    # for both, and images 0, 1, 3 hold one of them (r = sqrt 2), image 2 none (r = 1).
    # Class 0: 3 annotations x sqrt 2 = 4.24 -> 4; class 2: 4 x sqrt 2 = 5.66 -> 6; absent classes stay 0.
    assert class_counts_from_config(cfg) == [4, 0, 6, 0]
    cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER = False
    assert class_counts_from_config(cfg) == [3, 0, 4, 0]
    cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER = True
    cfg.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # no repeats: the plain counts
    assert class_counts_from_config(cfg) == [3, 0, 4, 0]
