"""Shared by test_eql.py and test_eqlv2.py: a tiny training run of a head, then --eval-only."""
import json
import math
import os

import pytest
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from lda_det import model_zoo
from lda_det.data import register_lvis_format, synthetic_lt

from .conftest import DEMO_CONFIG, load_train_net, tiny_cfg, tiny_opts

NUM_VAL_IMAGES = 8
FEW_VAL = "lda_test_eql_few_val"


@pytest.fixture(scope="module")
def few_val_images(synthetic_root, tmp_path_factory):
    """The first validation images of the synthetic set: two evaluations in seconds, not half a minute."""
    if FEW_VAL not in DatasetCatalog.list():
        with open(synthetic_lt.json_path(synthetic_root, "val")) as f:
            data = json.load(f)
        data["images"] = data["images"][:NUM_VAL_IMAGES]
        kept = {image["id"] for image in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
        json_file = str(tmp_path_factory.mktemp("few_val") / "few_val.json")
        with open(json_file, "w") as f:
            json.dump(data, f)
        register_lvis_format(FEW_VAL, json_file, synthetic_root + os.sep, synthetic_lt.CATEGORY_NAMES)
    return FEW_VAL


def train_then_eval_only(tmp_path, monkeypatch, head_opts):
    """3 iterations of train_net.py with ``head_opts`` (finite losses), then --eval-only of its
    model_final.pth with a DATASETS.TRAIN that is not on disk: the same metrics.

    Returns (trainer, model built without training data with the checkpoint loaded)."""
    train_net = load_train_net()
    parser = train_net.default_argument_parser()
    opts = tiny_opts(tmp_path) + [str(o) for o in head_opts] + ["DATASETS.TEST", f"('{FEW_VAL}',)"]
    args = parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG)] + opts)
    trainer = train_net.Trainer(train_net.setup(args))
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    for name in ("loss_cls", "loss_box_reg", "loss_mask", "total_loss"):
        values = [v for v, _ in history[name].values()]
        assert len(values) == 3 and all(math.isfinite(v) for v in values), (name, values)
    results = trainer._last_eval_results
    assert {"AP", "APr", "APc", "APf"} <= set(results["bbox"])
    weights = os.path.join(tmp_path, "model_final.pth")

    monkeypatch.chdir(tmp_path)  # lvis_v0.5_train's json (./datasets/lvis/...) is not here
    absent = ["DATASETS.TRAIN", "('lvis_v0.5_train',)"]
    loaded = build_model(tiny_cfg(opts=list(head_opts) + absent))
    DetectionCheckpointer(loaded).load(weights)
    eval_args = parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only"]
                                  + opts + absent + ["OUTPUT_DIR", str(tmp_path / "eval"), "MODEL.WEIGHTS", weights])
    assert train_net.main(eval_args) == results
    return trainer, loaded
