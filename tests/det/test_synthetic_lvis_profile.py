"""The synthetic dataset with LVIS v1's class-frequency profile (counts only: generating it takes a minute)."""
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from lda_det import model_zoo
from lda_det.data import synthetic_lt, synthetic_lvis_profile
from lda_det.data.lvis_v1_counts import lvis_v1_train_counts


def test_profile_follows_lvis_v1():
    profile = synthetic_lvis_profile.lvis_profile()
    counts = profile.train_image_counts
    groups = np.asarray([synthetic_lt.lvis_frequency(int(c)) for c in counts])
    # LVIS v1: 337 / 461 / 405 of 1203 categories -> 6.7 / 9.2 / 8.1 of 24.
    assert [int((groups == g).sum()) for g in "rcf"] == [7, 9, 8]
    table = lvis_v1_train_counts()
    # Rare and common counts are LVIS quantiles, kept; frequent ones compressed into 101..MAX.
    for group in "rc":
        assert set(counts[groups == group]) <= set(table.image_count[table.frequency == group])
    assert counts[groups == "f"].min() >= 101 and counts.max() <= synthetic_lvis_profile.MAX_FREQUENT_IMAGES
    assert counts[groups == "r"].min() == 1  # as on LVIS, classes with a single training image
    # Every frequency group covers every shape and every colour.
    for group in "rcf":
        members = np.flatnonzero(groups == group)
        assert {m // len(synthetic_lt.COLOURS) for m in members} == set(range(len(synthetic_lt.SHAPES)))
        assert {m % len(synthetic_lt.COLOURS) for m in members} == set(range(len(synthetic_lt.COLOURS)))
    # Instances per image: LVIS's ratio capped at 3; the probabilities give that mean.
    assert np.all((profile.instances_per_image >= 1) & (profile.instances_per_image <= 3))
    np.testing.assert_allclose(1 + profile.second_instance_probabilities.sum(1), profile.instances_per_image)


def test_registered_with_its_config():
    for name, split in synthetic_lvis_profile.SPLITS.items():
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).json_file == synthetic_lt.json_path(synthetic_lvis_profile.default_root(), split)
    cfg = model_zoo.get_config("LVIS-LDA/synthetic_lvis_profile.yaml")
    assert cfg.DATASETS.TRAIN == ("synthetic_lvis_profile_train",)
    assert (cfg.MODEL.LDA.SCALING, cfg.MODEL.LDA.BALANCED_LOSS_WEIGHT) == ("calibrated", 0.0031)
