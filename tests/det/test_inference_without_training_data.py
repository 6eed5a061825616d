"""Building an LDA model needs no training data: LVIS v1 counts are shipped, others travel in the checkpoint."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

from lda_core import LDALoss
from lda_det import model_zoo
from lda_det.class_counts import class_counts_for_model, class_counts_from_config
from lda_det.data import register_lvis_format, synthetic_lt
from lda_det.data.lvis_v1_counts import lvis_v1_train_counts

from .conftest import DEMO_CONFIG, load_train_net, tiny_cfg, tiny_opts

NUM_VAL_IMAGES = 6


def _no_json_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("an LVIS json was loaded")
    monkeypatch.setattr("detectron2.data.datasets.lvis.load_lvis_json", fail)


def test_lvis_config_builds_from_the_shipped_counts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # detectron2 looks for ./datasets/lvis/: there is none here
    assert not os.path.isfile(MetadataCatalog.get("lvis_v1_train").json_file)
    _no_json_loading(monkeypatch)
    cfg = model_zoo.get_config("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")
    cfg.MODEL.DEVICE = "cpu"
    table = lvis_v1_train_counts()
    # The LVIS configs count instances as repeat-factor sampling (threshold 1e-3) draws them; without
    # per-image data each class's own factor r(c) = max(1, sqrt(1e-3 / f_c)) stands in for its images'.
    repeat = np.maximum(1.0, np.sqrt(1e-3 / (table.image_count / 100170)))
    drawn = np.maximum(np.rint(table.instance_count * repeat), 1).astype(np.int64).tolist()
    assert class_counts_for_model(cfg) == drawn
    cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER = False
    assert class_counts_for_model(cfg) == table.instance_count.tolist()
    cfg.MODEL.LDA.CLASS_COUNT_SOURCE = "image_count"
    assert class_counts_from_config(cfg) == table.image_count.tolist()
    cfg.MODEL.LDA.CLASS_COUNT_SOURCE = "instance_count"
    predictor = build_model(cfg).roi_heads.box_predictor
    assert predictor.class_counts_known and predictor.class_counts.tolist() == table.instance_count.tolist()


@pytest.fixture
def val_only_set(synthetic_root, tmp_path):
    """An LVIS-format dataset with a validation split only: the first images of the synthetic val split.

    "lda_test_val_only_train" is registered but has no file, as a user's train json that is absent.
    """
    root = tmp_path / "val_only"
    (root / "val").mkdir(parents=True)
    with open(synthetic_lt.json_path(synthetic_root, "val")) as f:
        data = json.load(f)
    data["images"] = data["images"][:NUM_VAL_IMAGES]
    kept = {image["id"] for image in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
    for image in data["images"]:
        shutil.copy(os.path.join(synthetic_root, "val", image["file_name"]), root / "val" / image["file_name"])
    with open(root / "val.json", "w") as f:
        json.dump(data, f)
    names = {"train": "lda_test_val_only_train", "val": "lda_test_val_only_val"}
    for split, name in names.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_lvis_format(name, str(root / f"{split}.json"), str(root) + os.sep, synthetic_lt.CATEGORY_NAMES)
    yield names, str(root)
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_eval_only_on_a_val_only_set_takes_the_checkpoint_counts(val_only_set, tmp_path, monkeypatch):
    names, root = val_only_set
    saved_counts = list(range(100, 124))
    trained = build_model(tiny_cfg(opts=["MODEL.LDA.CLASS_COUNT_SOURCE", "config",
                                         "MODEL.LDA.CLASS_COUNTS", saved_counts]))
    DetectionCheckpointer(trained, save_dir=str(tmp_path)).save("model_final")
    weights = str(tmp_path / "model_final.pth")
    data_opts = ["DATASETS.TRAIN", f"('{names['train']}',)", "DATASETS.TEST", f"('{names['val']}',)"]

    # Built without counts (the train json is absent), then the checkpoint's counts are loaded.
    cfg = tiny_cfg(opts=data_opts)
    assert class_counts_for_model(cfg) is None
    model = build_model(cfg)
    assert not model.roi_heads.box_predictor.class_counts_known
    DetectionCheckpointer(model).load(weights)
    predictor = model.roi_heads.box_predictor
    assert predictor.class_counts_known and predictor.class_counts.tolist() == saved_counts
    torch.testing.assert_close(predictor.lda_loss.class_weights, LDALoss(saved_counts).class_weights)

    # train_net.py --eval-only on the val-only set.
    train_net = load_train_net()
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only"]
        + tiny_opts(tmp_path / "eval") + data_opts + ["MODEL.WEIGHTS", weights])
    results = train_net.main(args)
    assert {"AP", "APr", "APc", "APf"} <= set(results["bbox"]) and "segm" in results

    # DefaultPredictor: the same model on one image.
    cfg.MODEL.WEIGHTS = weights
    image = utils.read_image(os.path.join(root, "val", "000001.png"), "BGR")
    instances = DefaultPredictor(cfg)(image)["instances"]
    assert len(instances) > 0


def test_training_without_counts_is_a_clear_error(val_only_set):
    names, _ = val_only_set
    model = build_model(tiny_cfg(opts=["DATASETS.TRAIN", f"('{names['train']}',)"]))
    predictor = model.roi_heads.box_predictor.train()
    classification = predictor(torch.randn(4, predictor.bbox_pred.in_features))
    with pytest.raises(RuntimeError, match="DATASETS.TRAIN"):
        predictor.losses(classification, [])


def test_checkpoint_counts_win_over_recomputed_ones(synthetic_root, tmp_path, caplog):
    saved_counts = [5] * 12 + [50] * 12
    source = build_model(tiny_cfg(opts=["MODEL.LDA.CLASS_COUNT_SOURCE", "config",
                                        "MODEL.LDA.CLASS_COUNTS", saved_counts]))
    source.roi_heads.box_predictor.lda_loss.balance.num_updates.fill_(7)
    DetectionCheckpointer(source, save_dir=str(tmp_path)).save("model")
    target = build_model(tiny_cfg())  # counts of synthetic_lt_train
    assert target.roi_heads.box_predictor.class_counts.tolist() != saved_counts
    with caplog.at_level(logging.WARNING, logger="lda_det.heads.lda"):
        DetectionCheckpointer(target).load(str(tmp_path / "model.pth"))
    predictor = target.roi_heads.box_predictor
    assert predictor.class_counts.tolist() == saved_counts
    torch.testing.assert_close(predictor.lda_loss.class_weights, LDALoss(saved_counts).class_weights)
    assert int(predictor.lda_loss.balance.num_updates) == 7  # the rebuilt loss loaded its window too
    assert "differ from those of the config" in caplog.text
