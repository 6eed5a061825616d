"""The LVIS v1 class counts shipped in lda_det against detectron2's own LVIS metadata."""
import numpy as np
from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES
from detectron2.data.datasets.lvis_v1_category_image_count import LVIS_CATEGORY_IMAGE_COUNT

from lda_det.data.lvis_v1_counts import lvis_v1_train_counts


def test_table_matches_detectron2_and_lvis_v1_totals():
    table = lvis_v1_train_counts()
    assert len(table.ids) == 1203 and table.ids.tolist() == list(range(1, 1204))
    by_id = {c["id"]: c["image_count"] for c in LVIS_CATEGORY_IMAGE_COUNT}
    assert table.image_count.tolist() == [by_id[i] for i in range(1, 1204)]
    categories = sorted(LVIS_CATEGORIES, key=lambda c: c["id"])
    assert list(table.names) == [c["name"] for c in categories]
    assert table.frequency.tolist() == [c["frequency"] for c in categories]
    # LVIS v1 (Gupta et al. 2019): 337 rare / 461 common / 405 frequent, 1,270,141 instances.
    assert [int((table.frequency == g).sum()) for g in "rcf"] == [337, 461, 405]
    assert int(table.instance_count.sum()) == 1270141
    # Every annotated image holds at least one instance; LVIS's groups are 1-10 / 11-100 / >100 images.
    assert np.all(table.instance_count >= table.image_count) and table.image_count.min() >= 1
    assert table.image_count[table.frequency == "r"].max() <= 10
    assert table.image_count[table.frequency == "f"].min() > 100
