"""The sharded LVIS evaluator (lda_det.evaluation, train_net.py's default) against detectron2's LVISEvaluator
(lvis-api), on the synthetic LVIS-profile set and on a generated case with LVIS v1's 1203 categories;
2 gloo ranks against 1; re-evaluation from the shards without the model."""
import json
import logging
import os
import re

import pytest
from detectron2.evaluation import LVISEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from lda_det import model_zoo, restore_numpy_aliases
from lda_common.atomic_files import is_temporary
from lda_det.data import ensure_available, synthetic_lt, synthetic_lvis_profile
from lda_det.data.lvis_sized import generated_detections, lvis_sized_ground_truth
from lda_det.evaluation import MANIFEST, RESULTS_FILE, ShardedLVISEvaluator, shard_directory
from lda_det.evaluation import sharded_lvis

from ..helpers import launch_on_ranks
from .conftest import DEMO_CONFIG, load_train_net
from .lvis_eval_helpers import model_outputs, register_json, run_evaluator
from .lvis_eval_worker import sharded_evaluation_on_rank

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
TOLERANCE = 1e-4
PROFILE_VAL = "synthetic_lvis_profile_val"


def _assert_equal_metrics(ours, reference):
    assert set(ours) == set(reference) == {"bbox", "segm"}
    differences = {task: {m: abs(ours[task][m] - reference[task][m]) for m in METRICS} for task in reference}
    print("max |difference| per metric:", json.dumps(differences))
    for task in reference:
        assert set(ours[task]) == set(METRICS)
        for metric in METRICS:
            assert differences[task][metric] <= TOLERANCE, (task, metric, ours[task][metric], reference[task][metric])


@pytest.fixture(scope="module")
def profile_val():
    """The synthetic LVIS-profile validation json, and 100 generated detections per image."""
    ensure_available(PROFILE_VAL)
    json_file = synthetic_lt.json_path(synthetic_lvis_profile.default_root(), "val")
    with open(json_file) as f:
        gt = json.load(f)
    return json_file, gt, generated_detections(gt, per_image=100)


def test_equal_to_lvis_api_on_the_synthetic_lvis_profile_set(profile_val, tmp_path):
    _, gt, detections = profile_val
    restore_numpy_aliases()
    reference = LVISEvaluator(PROFILE_VAL, distributed=False, output_dir=str(tmp_path / "d2"), max_dets_per_image=300)
    ours = ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path / "ours"), max_dets_per_image=300)
    reference.reset()
    ours.reset()
    for image, image_detections in zip(gt["images"], detections):  # the same model outputs for both
        inputs, outputs = [{"image_id": image["id"]}], [model_outputs(image_detections, image)]
        reference.process(inputs, outputs)
        ours.process(inputs, outputs)
    reference_results, our_results = reference.evaluate(), ours.evaluate()
    _assert_equal_metrics(our_results, reference_results)
    for task in ("bbox", "segm"):  # a case that tells evaluators apart: every group present, AP well inside (0, 100)
        assert 10 < our_results[task]["AP"] < 90 and min(our_results[task][f"AP{g}"] for g in "rcf") > 5
    # detectron2's results json, the same detections in the same order.
    with open(tmp_path / "d2" / RESULTS_FILE) as f, open(tmp_path / "ours" / RESULTS_FILE) as g:
        assert json.load(f) == json.load(g)


def test_equal_to_lvis_api_on_an_lvis_sized_case(tmp_path, caplog):
    """1203 categories (LVIS v1's table), 300 detections per image, negative and not-exhaustive categories,
    tied scores, zero-area detections; the evaluation in several category chunks."""
    gt = lvis_sized_ground_truth(36, seed=3, prior_power=0.5)
    # lvis-api evaluates neither objects nor detections of area 0 (LVIS.get_ann_ids: 0 < area < inf):
    # a ground-truth object of area 0 here, and zero-area detections from generated_detections.
    gt["annotations"][0]["area"] = 0
    json_file = str(tmp_path / "lvis_sized.json")
    with open(json_file, "w") as f:
        json.dump(gt, f)
    register_json("lda_test_lvis_sized", json_file)
    detections = generated_detections(gt, per_image=300, seed=4)
    restore_numpy_aliases()
    reference = LVISEvaluator("lda_test_lvis_sized", distributed=False, max_dets_per_image=300)
    reference.reset()
    reference._predictions = [{"image_id": image["id"], "instances": [dict(d, category_id=d["category_id"] - 1)
                                                                      for d in image_detections]}
                              for image, image_detections in zip(gt["images"], detections)]
    ours = ShardedLVISEvaluator("lda_test_lvis_sized", str(tmp_path / "ours"), max_dets_per_image=300,
                                chunk_objects=3000)
    ours.reset()
    for image, image_detections in zip(gt["images"], detections):
        ours._writer.write(image["id"], image_detections)  # what process() writes: LVIS results of one image
    with caplog.at_level(logging.INFO, logger="lda_det.evaluation.lvis_metrics"):
        _assert_equal_metrics(ours.evaluate(), reference.evaluate())
    chunks = [int(n) for n in re.findall(r"(\d+) category chunks", caplog.text)]
    assert len(chunks) == 2 and min(chunks) > 1  # bbox and segm, each in several chunks
    frequencies = {c["id"]: c["frequency"] for c in gt["categories"]}
    assert {frequencies[a["category_id"]] for a in gt["annotations"]} == {"r", "c", "f"}
    assert any(image["not_exhaustive_category_ids"] for image in gt["images"])
    assert sum(d["bbox"][2] * d["bbox"][3] == 0 for image in detections for d in image) > 10


def test_two_ranks_equal_one_rank_and_the_shards_evaluate_again_without_the_model(profile_val, tmp_path,
                                                                                  monkeypatch):
    json_file, gt, detections = profile_val
    one_rank = run_evaluator(ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path / "one"), max_dets_per_image=300),
                             gt["images"], detections)
    output_dir = tmp_path / "run" / "inference"
    result_file = str(tmp_path / "two_ranks.json")
    launch_on_ranks(sharded_evaluation_on_rank, 2, json_file, PROFILE_VAL, str(output_dir), 100, result_file)
    with open(result_file) as f:
        two_ranks = json.load(f)
    assert two_ranks == json.loads(json.dumps(one_rank))  # the same numbers (json: as the worker saved them)
    shards = shard_directory(str(output_dir), PROFILE_VAL)
    assert sorted(os.listdir(shards)) == [MANIFEST, "shard-00000-of-00002.jsonl", "shard-00001-of-00002.jsonl"]
    with open(os.path.join(shards, MANIFEST)) as f:
        manifest = json.load(f)
    assert [s["images"] for s in manifest["shards"]] == [(len(gt["images"]) + 1) // 2, len(gt["images"]) // 2]

    # train_net.py --eval-only --eval-from-shards: the same numbers, no model built.
    train_net = load_train_net()

    def no_model(*args, **kwargs):
        raise AssertionError("--eval-from-shards built a model")
    monkeypatch.setattr(train_net.Trainer, "build_model", no_model)
    args = train_net.build_parser().parse_args(
        ["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only", "--eval-from-shards",
         "DATASETS.TEST", f"('{PROFILE_VAL}',)", "OUTPUT_DIR", str(tmp_path / "run")])
    assert json.loads(json.dumps(train_net.main(args))) == two_ranks


def test_a_failed_evaluation_leaves_the_shards_and_a_new_inference_invalidates_them(profile_val, tmp_path,
                                                                                   monkeypatch):
    _, gt, detections = profile_val
    evaluator = ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path), max_dets_per_image=300)
    expected = run_evaluator(evaluator, gt["images"], detections)

    def crash(*args, **kwargs):
        raise MemoryError("killed during the evaluation")
    monkeypatch.setattr(sharded_lvis, "evaluate_lvis", crash)
    with pytest.raises(MemoryError):
        run_evaluator(evaluator, gt["images"], detections)
    monkeypatch.undo()
    assert ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path)).evaluate_from_shards() == expected
    # An inference that did not finish (reset, then a crash): no manifest, a clear error, no stale numbers.
    evaluator.reset()
    evaluator.process([{"image_id": gt["images"][0]["id"]}], [model_outputs(detections[0], gt["images"][0])])
    with pytest.raises(FileNotFoundError, match="manifest.json not found"):
        ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path)).evaluate_from_shards()
    # The next inference discards the killed one's temporary file.
    run_evaluator(ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path)), gt["images"][:2], detections[:2])
    assert not [name for name in os.listdir(shard_directory(str(tmp_path), PROFILE_VAL)) if is_temporary(name)]


def test_malformed_shards_are_named(profile_val, tmp_path):
    _, gt, detections = profile_val
    evaluator = ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path))
    run_evaluator(evaluator, gt["images"][:3], detections[:3])
    shard = os.path.join(shard_directory(str(tmp_path), PROFILE_VAL), "shard-00000-of-00001.jsonl")
    with open(shard, "ab") as f:
        f.write(b"tampered\n")
    with pytest.raises(ValueError, match="shard-00000-of-00001.jsonl: .* bytes, .* lists"):
        evaluator.evaluate_from_shards()
    # A detection of an image the ground truth does not have.
    evaluator.reset()
    image = dict(gt["images"][0])
    evaluator.process([{"image_id": 10 ** 9}], [model_outputs(detections[0], image)])
    with pytest.raises(ValueError, match=r"shard-00000-of-00001.jsonl:1: image id 1000000000 is not in"):
        evaluator.evaluate()


def test_train_net_selects_the_evaluator(synthetic_root, tmp_path):
    train_net = load_train_net()
    parser = train_net.build_parser()

    def cfg(*opts):
        return train_net.setup(parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG), *opts,
                                                  "OUTPUT_DIR", str(tmp_path)]))
    assert isinstance(train_net.Trainer.build_evaluator(cfg(), "synthetic_lt_val"), ShardedLVISEvaluator)
    assert isinstance(train_net.Trainer.build_evaluator(cfg("TEST.LVIS_EVALUATOR", "detectron2"), "synthetic_lt_val"),
                      LVISEvaluator)
    with pytest.raises(ValueError, match="TEST.LVIS_EVALUATOR 'lvis' is not one of"):
        cfg("TEST.LVIS_EVALUATOR", "lvis")
    with pytest.raises(ValueError, match="--eval-from-shards .* needs --eval-only"):
        cfg("--eval-from-shards")


def test_process_writes_what_detectron2_encodes(profile_val, tmp_path):
    """A shard line is instances_to_coco_json's output with LVIS category ids."""
    _, gt, detections = profile_val
    evaluator = ShardedLVISEvaluator(PROFILE_VAL, str(tmp_path))
    evaluator.reset()
    image = gt["images"][0]
    outputs = model_outputs(detections[0], image)
    evaluator.process([{"image_id": image["id"]}], [outputs])
    evaluator._writer.close()
    with open(os.path.join(shard_directory(str(tmp_path), PROFILE_VAL), "shard-00000-of-00001.jsonl")) as f:
        line = json.loads(f.readline())
    expected = instances_to_coco_json(outputs["instances"], image["id"])
    for result in expected:
        result["category_id"] += 1
    assert line == {"image_id": image["id"], "instances": json.loads(json.dumps(expected))}
