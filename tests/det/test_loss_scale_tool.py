"""projects/LDA/tools/loss_scale.py: the effective coefficient of the balanced risk, by hand and on LVIS."""
import math

import pytest
from lda_det.class_counts import class_counts_from_config
from detectron2.data import DatasetCatalog

from lda_det import model_zoo

from ..helpers import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("projects/LDA/tools/loss_scale.py", "lda_det_loss_scale_tool")


def test_lvis_coefficient_does_not_depend_on_the_number_of_gpus(tool, capsys):
    config = model_zoo.get_config_file("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")
    # n_y as repeat-factor sampling draws LVIS's instances (MODEL.LDA.COUNTS_UNDER_SAMPLER).
    counts = class_counts_from_config(model_zoo.get_config("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml"))
    total = sum(counts)
    printed = {}
    for gpus in (1, 8):
        tool.main(["--config-file", config, "--num-gpus", str(gpus)])
        out = capsys.readouterr().out
        printed[gpus] = [line for line in out.splitlines() if line.startswith("EFFECTIVE COEFFICIENT")]
        assert f"{16 // gpus} images per rank" in out and str(total) in out
    assert len(printed[1]) == 1 and printed[1] == printed[8]
    cfg = model_zoo.get_config("LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml")
    one, eight = tool.loss_scale(cfg, 1), tool.loss_scale(cfg, 8)
    assert one["effective_coefficient"] == eight["effective_coefficient"]
    assert (one["positives"]["rank"], eight["positives"]["rank"]) == (2048, 256)  # 16 x 512 x 0.25, / 8
    # Counts taken under the sampler: the calibrated weights have mean 1 where the positives are drawn
    # (up to the rounding of the counts); counting each annotation once gave E[N / (C n_y)] of 2.6.
    assert one["expected_calibrated_weight"] == pytest.approx(1.0, abs=0.01)
    assert one["rarest_calibrated_weight"] == pytest.approx(total / (1203 * min(counts)))
    cfg.MODEL.LDA.COUNTS_UNDER_SAMPLER = False
    plain = tool.loss_scale(cfg, 1)
    assert plain["expected_calibrated_weight"] > 1.5
    assert plain["rarest_calibrated_weight"] == pytest.approx(1270141 / 1203)


DICTS = [  # class 0 in 3 of 4 images, class 1 in one image (with 2 instances)
    {"annotations": [{"category_id": 0}]}, {"annotations": [{"category_id": 0}]},
    {"annotations": [{"category_id": 0}, {"category_id": 1}, {"category_id": 1}]}, {"annotations": []},
]


def _cfg(opts):
    cfg = model_zoo.get_config("LVIS-LDA/synthetic_lt_demo.yaml")
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", 2, "SOLVER.IMS_PER_BATCH", 4,
                         "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 8, "MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.25,
                         "MODEL.LDA.BALANCED_LOSS_WEIGHT", 2.0, "MODEL.LDA.GAMMA", 2.0] + opts)
    return cfg


def test_numbers_by_hand(tool):
    # n = [1, 3], N = 4, C = 2; B_global = 4 images x 8 x 0.25 = 8 positives of 32 sampled proposals.
    cfg = _cfg(["MODEL.LDA.CLASS_COUNT_SOURCE", "config", "MODEL.LDA.CLASS_COUNTS", [1, 3]])
    result = tool.loss_scale(cfg, num_gpus=2, delta_accs=[10.0])
    assert result["positives"] == {"global": 8, "rank": 4} and result["normalization"] == 0.25
    assert result["effective_coefficient"] == pytest.approx(2.0 * 8 / 4)  # official: factor x B / N
    # Sampled like n_y: E[N / (C n_y)] = 1/4 x 4/2 + 3/4 x 4/6 = 1.
    assert result["expected_calibrated_weight"] == pytest.approx(1.0)
    row = result["rows"][0]
    assert row["alpha"] == pytest.approx(100.0)  # (10 percent)^2
    assert row["loss_unbalanced"] == pytest.approx(math.log(2) * 0.25)
    assert row["loss_balanced"] == pytest.approx(4.0 * 100 * 1.0 * math.log(2) * 0.25)
    assert row["grad_balanced"] == pytest.approx(4.0 * 100 * math.sqrt(0.5) * 0.25)
    calibrated = tool.loss_scale(_cfg(["MODEL.LDA.CLASS_COUNT_SOURCE", "config", "MODEL.LDA.CLASS_COUNTS", [1, 3],
                                       "MODEL.LDA.SCALING", "calibrated"]), num_gpus=4, delta_accs=[10.0])
    assert calibrated["effective_coefficient"] == 2.0  # the factor itself, whatever B and N


def test_repeat_factors_of_a_registered_dataset(tool):
    name = "lda_test_loss_scale_rfs"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DICTS)
    cfg = _cfg(["DATASETS.TRAIN", (name,), "MODEL.LDA.CLASS_COUNT_SOURCE", "instance_count",
                "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", 1.0])
    p, note = tool.sampled_class_distribution(cfg, 2)
    # f = [3/4, 1/4] of 4 images: r = [sqrt(4/3), 2]; image 3 holds class 1, so r(image 3) = 2.
    # Sampled instances: class 0: 2 x sqrt(4/3) + 1 x 2, class 1: 2 x 2.
    weights = [2 * math.sqrt(4 / 3) + 2, 4]
    assert p.tolist() == pytest.approx([w / sum(weights) for w in weights]) and "exact" in note
    # n = [3, 2], N = 5: E[N / (C n_y)] = p0 x 5/6 + p1 x 5/4.
    result = tool.loss_scale(cfg, 1)
    assert result["expected_calibrated_weight"] == pytest.approx(p[0] * 5 / 6 + p[1] * 5 / 4)
