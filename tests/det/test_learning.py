"""The LDA detector really learns: LVIS AP on a few synthetic images it trains on.

(The full demo schedule, 400 iterations on 674 images, is benchmarks/bench_det_synthetic.py.)
"""
import json
import os

import pytest
from detectron2.data import DatasetCatalog
from detectron2.utils.env import seed_all_rng

from lda_det.data import register_lvis_format, synthetic_lt

from .conftest import load_train_net, tiny_cfg

NUM_IMAGES = 12
ITERATIONS = 150


@pytest.fixture(scope="module")
def few_images(synthetic_root, tmp_path_factory):
    """The first training images of the synthetic set as their own LVIS-format dataset."""
    name = "lda_test_few_images"
    if name not in DatasetCatalog.list():
        with open(synthetic_lt.json_path(synthetic_root, "train")) as f:
            data = json.load(f)
        keep = {image["id"] for image in data["images"][:NUM_IMAGES]}
        data["images"] = [image for image in data["images"] if image["id"] in keep]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
        json_file = str(tmp_path_factory.mktemp("few") / "few_images.json")
        with open(json_file, "w") as f:
            json.dump(data, f)
        register_lvis_format(name, json_file, synthetic_root + os.sep, synthetic_lt.CATEGORY_NAMES)
    return name


def test_lda_detector_learns(few_images, tmp_path):
    train_net = load_train_net()
    cfg = tiny_cfg(tmp_path, opts=[
        "DATASETS.TRAIN", (few_images,), "DATASETS.TEST", (few_images,),
        # Repeat factors of 1 with a fixed seed: the same image order on every run.
        "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", 0.0, "SEED", 0,
        "SOLVER.IMS_PER_BATCH", 4, "SOLVER.BASE_LR", 0.02,
        "SOLVER.MAX_ITER", ITERATIONS, "SOLVER.STEPS", (int(ITERATIONS * 0.8),), "SOLVER.WARMUP_ITERS", 20,
        "MODEL.ROI_BOX_HEAD.FC_DIM", 128, "MODEL.LDA.WINDOW", 10,
        # 12 images hold ~40 instances, about one batch of positives: the official scaling's
        # balanced risk, (positives / instances) x balanced CE, would be ~40x LVIS's.
        # The normalized scaling does not depend on the dataset size.
        "MODEL.LDA.SCALING", "normalized", "MODEL.LDA.BALANCED_LOSS_WEIGHT", 2.0,
    ])
    seed_all_rng(0)  # weights and augmentation
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    before = train_net.Trainer.test(cfg, trainer.model)
    trainer.train()
    after = trainer._last_eval_results
    # Scored with h (the balanced classifier), as LDA's inference does.
    assert before["bbox"]["AP"] < 1.0 and before["segm"]["AP"] < 1.0
    # ~19 bbox AP with this seed (plain Mask R-CNN: ~40; AP of an untrained model: < 1).
    assert after["bbox"]["AP"] > 10.0, after
    assert after["segm"]["AP"] > 10.0, after
    window = trainer.model.roi_heads.box_predictor.lda_loss.balance
    assert int(window.num_updates) == ITERATIONS
