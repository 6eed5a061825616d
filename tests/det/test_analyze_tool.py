"""projects/LDA/tools/analyze.py: weight norms of h, h' and a baseline, AP per category, on hand-built files."""
import json
import os

import numpy as np
import pytest
import torch

from ..helpers import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("projects/LDA/tools/analyze.py", "lda_det_analyze_tool")


def _box_annotation(ann_id, image_id, category_id, x, y, size):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [x, y, size, size],
            "area": float(size * size),
            "segmentation": [[x, y, x + size, y, x + size, y + size, x, y + size]]}


def _write_gt(path):
    """Three categories: frequent (200 training images), common (50), rare (5); three 100x100 images."""
    categories = [{"id": 1, "name": "cat", "frequency": "f", "image_count": 200, "synonyms": ["cat"]},
                  {"id": 2, "name": "dog", "frequency": "c", "image_count": 50, "synonyms": ["dog"]},
                  {"id": 3, "name": "yak", "frequency": "r", "image_count": 5, "synonyms": ["yak"]}]
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg", "neg_category_ids": [],
               "not_exhaustive_category_ids": []} for i in (1, 2, 3)]
    annotations = [_box_annotation(1, 1, 1, 10, 10, 20), _box_annotation(2, 2, 1, 50, 50, 20),
                   _box_annotation(3, 1, 2, 60, 10, 20), _box_annotation(4, 3, 2, 10, 60, 20),
                   _box_annotation(5, 2, 3, 10, 60, 30)]
    with open(path, "w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    return str(path)


# Every "cat" found, one of the two "dog"s, no "yak".
DETECTIONS = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
              {"image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.9},
              {"image_id": 1, "category_id": 2, "bbox": [60, 10, 20, 20], "score": 0.8}]


def test_ap_per_category_on_a_hand_built_case(tool, tmp_path):
    gt = _write_gt(tmp_path / "gt.json")
    ap = tool.ap_per_category(gt, DETECTIONS)
    assert ap[1] == pytest.approx(1.0)
    # Recall 1/2 at precision 1: LVIS's 101 recall thresholds 0.00..0.50 get precision 1, the rest 0.
    assert ap[2] == pytest.approx(51 / 101)
    assert ap[3] == pytest.approx(0.0)


def test_classifier_weights_of_lda_and_baseline_checkpoints(tool):
    lda_state = {"roi_heads.box_predictor.balanced_score.weight": np.ones((3, 4)),
                 "roi_heads.box_predictor.unbalanced_score.weight": np.zeros((3, 4)),
                 "roi_heads.box_predictor.fg_bg_score.weight": np.zeros((2, 4))}
    assert set(tool.classifier_weights(lda_state, 3, "lda.pth")) == {"h", "h'"}
    baseline = {"roi_heads.box_predictor.cls_score.weight": np.arange(16.0).reshape(4, 4)}
    weights = tool.classifier_weights(baseline, 3, "base.pth")
    np.testing.assert_array_equal(weights["h"], np.arange(12.0).reshape(3, 4))  # background row dropped
    # Seesaw: C classes, then its two objectness logits (fg, bg).
    seesaw = {"roi_heads.box_predictor.cls_score.weight": np.arange(20.0).reshape(5, 4)}
    np.testing.assert_array_equal(tool.classifier_weights(seesaw, 3, "seesaw.pth")["h"],
                                  np.arange(12.0).reshape(3, 4))
    with pytest.raises(ValueError, match=r"base\.pth: .*cls_score.weight has 4 rows, expected 6 \(5 categories "
                                         r"of the ground truth \+ background .*\) or 7 \(.*Seesaw's objectness\)$"):
        tool.classifier_weights(baseline, 5, "base.pth")
    with pytest.raises(ValueError, match="no box predictor classifier found"):
        tool.classifier_weights({"backbone.weight": np.ones(3)}, 3, "x.pth")


def test_tool_draws_norms_and_ap_for_an_lda_run_against_a_baseline(tool, tmp_path):
    gt = _write_gt(tmp_path / "gt.json")
    lda_dir, base_dir = tmp_path / "lda_run", tmp_path / "baseline_run"
    for directory in (lda_dir, base_dir):
        (directory / "inference").mkdir(parents=True)
    balanced = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]])
    torch.save({"model": {"roi_heads.box_predictor.balanced_score.weight": balanced,
                          "roi_heads.box_predictor.unbalanced_score.weight": 2 * balanced},
                "iteration": 10}, lda_dir / "model_final.pth")
    (lda_dir / "last_checkpoint").write_text("model_final.pth")
    baseline = torch.tensor([[6.0, 8.0], [0.0, 1.0], [1.0, 0.0], [9.0, 9.0]])  # last row: background
    torch.save({"model": {"roi_heads.box_predictor.cls_score.weight": baseline}}, base_dir / "model_final.pth")
    with open(lda_dir / "inference" / "lvis_instances_results.json", "w") as handle:
        json.dump(DETECTIONS, handle)
    with open(base_dir / "inference" / "lvis_instances_results.json", "w") as handle:
        json.dump(DETECTIONS[:1], handle)

    # detectron2's JSONWriter lines; LDAOutputLayers logs lda/alpha, lda/delta_acc every LOG_PERIOD iterations.
    (lda_dir / "metrics.json").write_text(
        json.dumps({"iteration": 19, "lda/alpha": 4.0, "lda/delta_acc": 2.0, "total_loss": 3.0}) + "\n"
        + json.dumps({"iteration": 39, "lda/alpha": 1.0, "lda/delta_acc": 1.0}) + "\n"
        + json.dumps({"iteration": 39, "lda/alpha": 0.25, "lda/delta_acc": 0.5}) + "\n")  # re-logged after resume
    (base_dir / "metrics.json").write_text(json.dumps({"iteration": 19, "total_loss": 3.0}) + "\n")
    out = str(tmp_path / "analysis")
    result = tool.main([str(lda_dir), "--compare", str(base_dir), "--gt", gt, "--out", out])
    numbers = json.load(open(os.path.join(out, "analysis.json")))
    assert numbers["weight_norms"] == {"lda_run: h (balanced)": [5.0, 1.0, 2.0],
                                       "lda_run: h' (unbalanced)": [10.0, 2.0, 4.0],
                                       "baseline_run: (C+1)-way classifier": [10.0, 1.0, 1.0]}
    np.testing.assert_allclose(numbers["ap"]["lda_run"], [100.0, 100 * 51 / 101, 0.0])
    # The baseline found one of the two cats only.
    np.testing.assert_allclose(numbers["ap"]["baseline_run"], [100 * 51 / 101, 0.0, 0.0])
    assert numbers["ap_means"]["lda_run"]["few"] == pytest.approx(0.0)  # APr
    assert numbers["ap_means"]["lda_run"]["all"] == pytest.approx((100 + 100 * 51 / 101) / 3)
    assert tool.lda_curve(str(lda_dir / "metrics.json"))["alpha"].tolist() == [4.0, 0.25]
    page = open(result["report"], encoding="utf-8").read()
    assert page.count("data:image/png;base64,") == 3 and "://" not in page  # norms, AP, alpha (LDA run only)
    for path in result["figures"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
