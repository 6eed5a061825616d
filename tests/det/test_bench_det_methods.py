"""benchmarks/bench_det_synthetic.py trains each method with the keys of its LVIS config, and scales
the dataset-dependent ones (EQL's lambda, the federated class count) to the LVIS-profile set."""
import numpy as np
import pytest

from lda_common.config_keys import flatten_config
from lda_det import model_zoo
from lda_det.data import synthetic_lvis_profile
from lda_det.data.lvis_v1_counts import NUM_ANNOTATED_TRAIN_IMAGES, lvis_v1_train_counts

from ..helpers import load_script

BENCH = load_script("benchmarks/bench_det_synthetic.py", "bench_det_synthetic")


@pytest.mark.parametrize("method", list(BENCH.METHODS))
def test_benchmark_keys_are_those_of_the_lvis_config(method):
    lvis = model_zoo.get_config("LVIS-LDA/" + BENCH.METHODS[method].lvis_config)
    opts = BENCH.METHODS[method].opts
    for key, value in zip(opts[::2], opts[1::2]):
        node = lvis
        for part in key.split("."):
            node = getattr(node, part)
        assert str(node) == value, f"{method}: {key} is {node} in its LVIS config, {value} in the benchmark"
    # Every method but the baseline differs from it in the keys the benchmark sets.
    assert BENCH.METHODS[method].lvis_config.startswith("baseline") == (method == "baseline")


def test_methods_are_the_lvis_configs_and_make_them_from_the_baseline():
    """One method a configs/LVIS-LDA/*mask_rcnn_R_50_FPN_1x.yaml; the baseline's LVIS config with a method's keys
    is that method's LVIS config, but for the keys no method is made of (schedule, weights, heads' own nodes)."""
    import os
    configs = sorted(n for n in os.listdir(BENCH.LVIS_CONFIGS) if n.endswith(BENCH.LVIS_SUFFIX))
    assert sorted(m.lvis_config for m in BENCH.METHODS.values()) == configs
    stages = {method: spec.stage1 for method, spec in BENCH.METHODS.items()}
    assert stages.pop("crt") == "baseline" and set(stages.values()) == {None}
    for method, spec in BENCH.METHODS.items():
        built = model_zoo.get_config("LVIS-LDA/" + BENCH.METHODS["baseline"].lvis_config)
        built.merge_from_list(list(spec.opts))
        built, lvis = flatten_config(built), flatten_config(model_zoo.get_config("LVIS-LDA/" + spec.lvis_config))
        differ = [key for key in lvis if built[key] != lvis[key]]
        assert set(differ) <= BENCH.method_free_keys(differ), (method, differ)


def test_a_finished_run_leaves_its_record(tmp_path):
    """From a fake run directory (results.json, config.yaml; nothing trained): <method>_seed<s>.json."""
    import json
    run = tmp_path / "lda_seed1"
    run.mkdir()
    metrics = {"AP": 12.5, "AP50": 20.0, "AP75": 11.0, "APr": 3.0, "APc": 10.0, "APf": 20.0}
    (run / "results.json").write_text(json.dumps({"bbox": metrics, "segm": dict(metrics, AP=11.0),
                                                  "wall_s": 123.456, "opts": []}))
    (run / "config.yaml").write_text("SOLVER:\n  MAX_ITER: 200\n")
    path = BENCH.write_run_record(str(tmp_path), "lda", 1, str(run), BENCH.DEFAULT_CONFIG, resumed=True)
    record = json.loads(open(path).read())
    assert path == str(tmp_path / "lda_seed1.json")
    assert {k: record[k] for k in ("method", "seed", "iters", "config", "wall_time_s", "threads", "resumed")} == {
        "method": "lda", "seed": 1, "iters": 200, "config": "configs/LVIS-LDA/synthetic_lvis_profile.yaml",
        "wall_time_s": 123.5, "threads": 1, "resumed": True}
    assert record["bbox"] == metrics and record["segm"]["AP"] == 11.0
    assert record["commit"] == BENCH.git_commit() and len(record["commit"]) == 40  # results.json named none
    assert BENCH.default_results_dir(BENCH.DEFAULT_CONFIG, 200).endswith("benchmarks/results/det_synthetic_lvis_profile_i200")


def test_profile_image_count_keeps_rare_and_common_and_compresses_frequent():
    top = lvis_v1_train_counts().image_count.max()
    np.testing.assert_allclose(synthetic_lvis_profile.profile_image_count([1, 10, 100]), [1, 10, 100])
    np.testing.assert_allclose(synthetic_lvis_profile.profile_image_count([101, top]),
                               [101, synthetic_lvis_profile.MAX_FREQUENT_IMAGES])
    # The config's repeat-factor threshold is LVIS's 1e-3 mapped the same way (100 of 802 images).
    cfg = model_zoo.get_config("LVIS-LDA/synthetic_lvis_profile.yaml")
    assert synthetic_lvis_profile.profile_frequency(1e-3, 802) == pytest.approx(cfg.DATALOADER.REPEAT_THRESHOLD,
                                                                                abs=5e-4)


def test_eql_threshold_on_the_profile_suppresses_the_share_of_classes_it_does_on_lvis():
    """The LVIS v1 config's lambda = 1.1e-3 of 99,388 annotated images (109.3 images) suppresses 815 of 1203
    classes (67.7 %); mapped onto the profile (109.3 -> 104.2 images) it suppresses 16 of 24 (66.7 %):
    the same share, to one class of 24."""
    lam = model_zoo.get_config("LVIS-LDA/eql_mask_rcnn_R_50_FPN_1x.yaml").MODEL.EQL.LAMBDA
    on_lvis = (lvis_v1_train_counts().image_count < lam * NUM_ANNOTATED_TRAIN_IMAGES).mean()
    assert round(on_lvis * 1203) == 815
    threshold = synthetic_lvis_profile.profile_frequency(lam, 802, lvis_num_images=NUM_ANNOTATED_TRAIN_IMAGES) * 802
    on_profile = (synthetic_lvis_profile.lvis_profile().train_image_counts < threshold).mean()
    assert abs(on_profile - on_lvis) <= 1 / 24
