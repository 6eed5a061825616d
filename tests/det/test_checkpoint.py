"""Checkpoints: our own round trip through train_net.py, and plain Mask R-CNN -> LDA head."""
import logging
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model

from lda_det import model_zoo

from .conftest import DEMO_CONFIG, load_train_net, tiny_cfg, tiny_opts


def val_inputs(num_images=2):
    dicts = DatasetCatalog.get("synthetic_lt_val")[:num_images]
    return [{"image": torch.as_tensor(utils.read_image(d["file_name"], "BGR").transpose(2, 0, 1).copy()),
             "height": d["height"], "width": d["width"]} for d in dicts]


def predict(model, inputs):
    model.eval()
    with torch.no_grad():
        return [out["instances"].to("cpu") for out in model(inputs)]


def assert_same_predictions(a, b):
    for x, y in zip(a, b):
        assert len(x) == len(y) > 0
        torch.testing.assert_close(x.pred_boxes.tensor, y.pred_boxes.tensor, rtol=0, atol=0)
        torch.testing.assert_close(x.scores, y.scores, rtol=0, atol=0)
        assert torch.equal(x.pred_classes, y.pred_classes) and torch.equal(x.pred_masks, y.pred_masks)


def test_round_trip_through_train_net(synthetic_root, tmp_path):
    train_net = load_train_net()
    parser = train_net.default_argument_parser()
    args = parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG)] + tiny_opts(tmp_path))
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    trained_results = trainer._last_eval_results  # DefaultTrainer's record of the final evaluation
    assert set(trained_results) == {"bbox", "segm"}
    assert {"AP", "APr", "APc", "APf"} <= set(trained_results["bbox"])
    inputs = val_inputs()
    trained = predict(trainer.model, inputs)
    window = trainer.model.roi_heads.box_predictor.lda_loss.balance
    assert int(window.num_updates) > 0
    assert sorted(os.listdir(tmp_path)) == sorted(set(os.listdir(tmp_path)) - {f for f in os.listdir(tmp_path) if ".tmp" in f})
    weights = os.path.join(tmp_path, "model_final.pth")
    assert os.path.isfile(weights)

    # --eval-only, as from the command line: the same metrics.
    eval_args = parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only"]
                                  + tiny_opts(tmp_path / "eval") + ["MODEL.WEIGHTS", weights])
    assert train_net.main(eval_args) == trained_results
    # The loaded model gives identical outputs and carries the alpha window.
    loaded = build_model(tiny_cfg())
    DetectionCheckpointer(loaded).load(weights)
    assert_same_predictions(trained, predict(loaded, inputs))
    loaded_window = loaded.roi_heads.box_predictor.lda_loss.balance
    assert torch.equal(loaded_window.accuracies, window.accuracies)
    assert torch.equal(loaded_window.num_updates, window.num_updates)

    # --resume continues from the last checkpoint's iteration.
    resume_cfg = tiny_cfg(tmp_path, opts=["SOLVER.MAX_ITER", 5])
    resumed = train_net.Trainer(resume_cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == cfg.SOLVER.MAX_ITER


def test_eval_only_refuses_missing_or_mismatched_weights(synthetic_root, tmp_path):
    """No MODEL.WEIGHTS, or weights of another model, would evaluate random layers: an error naming why."""
    train_net = load_train_net()
    parser = train_net.default_argument_parser()

    def eval_only(*opts):
        args = parser.parse_args(["--config-file", model_zoo.get_config_file(DEMO_CONFIG), "--eval-only"]
                                 + tiny_opts(tmp_path / "eval") + [str(o) for o in opts])
        return train_net.main(args)

    with pytest.raises(ValueError, match="--eval-only needs weights: set MODEL.WEIGHTS"):
        eval_only()
    # A classification checkpoint (lda_cls's format: {"model": state dict}) shares no key with Mask R-CNN.
    import timm
    classifier = str(tmp_path / "classifier.pth")
    torch.save({"model": timm.create_model("resnet18", num_classes=10).state_dict()}, classifier)
    with pytest.raises(ValueError, match="weights do not match the model .*missing"):
        eval_only("MODEL.WEIGHTS", classifier)
    # An LDA checkpoint of another class count: keys match, shapes do not.
    other = build_model(tiny_cfg())
    state = {k: v for k, v in other.state_dict().items()}
    for key in [k for k in state if "balanced_score" in k]:
        state[key] = torch.cat([state[key], state[key][:1]])
    mismatched = str(tmp_path / "other_classes.pth")
    torch.save({"model": state}, mismatched)
    with pytest.raises(ValueError, match="another shape, e.g. .*balanced_score"):
        eval_only("MODEL.WEIGHTS", mismatched)


def _plain_and_lda_models():
    torch.manual_seed(0)
    plain = build_model(tiny_cfg(head="StandardROIHeads"))
    torch.manual_seed(1)
    lda = build_model(tiny_cfg())
    # A trained classifier has distinct biases; make them so.
    with torch.no_grad():
        plain.roi_heads.box_predictor.cls_score.bias.normal_(0, 1)
        plain.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.1)
    return plain, lda


@pytest.mark.parametrize("file_format", ["pth", "model_zoo_pkl"])
def test_plain_mask_rcnn_checkpoint_initialises_the_lda_head(synthetic_root, tmp_path, caplog, file_format):
    plain, lda = _plain_and_lda_models()
    state = plain.state_dict()
    if file_format == "pth":
        path = str(tmp_path / "plain.pth")
        torch.save({"model": state}, path)
    else:  # detectron2 model zoo's format: numpy arrays in a pickle with an __author__
        path = str(tmp_path / "plain.pkl")
        with open(path, "wb") as f:
            pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "Detectron2 Model Zoo"}, f)
    with caplog.at_level(logging.INFO):
        DetectionCheckpointer(lda).load(path)
    assert "Converted a (C+1)-way classifier" in caplog.text

    C = lda.roi_heads.num_classes
    old_w, old_b = state["roi_heads.box_predictor.cls_score.weight"], state["roi_heads.box_predictor.cls_score.bias"]
    head = lda.roi_heads.box_predictor
    for layer in (head.unbalanced_score, head.balanced_score):
        assert torch.equal(layer.weight, old_w[:C]) and torch.equal(layer.bias, old_b[:C])
    assert torch.equal(head.fg_bg_score.weight[1], old_w[C]) and head.fg_bg_score.bias[1] == old_b[C]
    # Everything else is copied as is.
    new_state = lda.state_dict()
    for key, value in state.items():
        if "cls_score" not in key:
            assert torch.equal(new_state[key], value), key

    # p(c | fg) is exactly the plain model's; p(fg) is exact at x = 0 and close nearby.
    x = torch.randn(6, head.bbox_pred.in_features) * 0.1
    plain_probs = F.softmax(x @ old_w.t() + old_b, dim=1)
    with torch.no_grad():
        head.eval()
        lda_probs = torch.cat(head.predict_probs(head(x), [range(6)]))
        zero_probs = torch.cat(head.predict_probs(head(torch.zeros(1, x.shape[1])), [range(1)]))
    plain_zero = F.softmax(old_b, dim=0)
    torch.testing.assert_close(zero_probs[0], plain_zero, rtol=1e-5, atol=1e-6)
    plain_cond = plain_probs[:, :C] / plain_probs[:, :C].sum(1, keepdim=True)
    lda_cond = lda_probs[:, :C] / lda_probs[:, :C].sum(1, keepdim=True)
    torch.testing.assert_close(lda_cond, plain_cond, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lda_probs[:, C].numpy(), plain_probs[:, C].numpy(), atol=0.02)


def test_wrong_class_count_in_plain_checkpoint_is_a_clear_error(synthetic_root, tmp_path):
    plain, lda = _plain_and_lda_models()
    state = plain.state_dict()
    state["roi_heads.box_predictor.cls_score.weight"] = state["roi_heads.box_predictor.cls_score.weight"][:5]
    state["roi_heads.box_predictor.cls_score.bias"] = state["roi_heads.box_predictor.cls_score.bias"][:5]
    path = str(tmp_path / "bad.pth")
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match="cls_score.weight has 5 rows"):
        DetectionCheckpointer(lda).load(path)


def test_torchvision_layout_backbone_loads_through_detectron2_heuristics(tmp_path):
    """The X-101-32x4d route: torchvision/timm weights -> tools/convert -> DetectionCheckpointer."""
    import subprocess
    import sys

    import timm
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_backbone

    source = timm.create_model("resnext50_32x4d", pretrained=False)  # torchvision key layout
    torch.save(source.state_dict(), tmp_path / "tv.pth")
    tool = os.path.join(os.path.dirname(__import__("lda_det").__file__), "..", "tools", "convert_torchvision_to_d2.py")
    subprocess.run([sys.executable, tool, str(tmp_path / "tv.pth"), str(tmp_path / "x50.pkl")], check=True)

    cfg = model_zoo.get_config("LVIS-LDA/mask_rcnn_X_101_32x4d_FPN_1x.yaml")
    cfg.MODEL.RESNETS.DEPTH = 50  # same layout as 101, smaller
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    DetectionCheckpointer(backbone).load(str(tmp_path / "x50.pkl"))
    state = backbone.state_dict()
    torch.testing.assert_close(state["bottom_up.stem.conv1.weight"], source.conv1.weight)
    torch.testing.assert_close(state["bottom_up.res5.2.conv2.weight"], source.layer4[2].conv2.weight)
    torch.testing.assert_close(state["bottom_up.res3.0.shortcut.norm.running_var"],
                               source.layer2[0].downsample[1].running_var)


def test_atomic_checkpointer_writes_through_path_manager(tmp_path, monkeypatch):
    """fvcore's save, through detectron2's PathManager, under a temporary name per writer: a failed save leaves
    the previous checkpoint and tag, and no temporary."""
    from detectron2.utils.file_io import PathManager

    from lda_common.atomic_files import is_temporary
    from lda_det.checkpoint import AtomicDetectionCheckpointer

    opened, real_open = [], PathManager.open

    def recording_open(path, mode="r", **kwargs):
        opened.append(path)
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(PathManager, "open", recording_open)
    run = tmp_path / "run"  # not there yet: save makes it
    checkpointer = AtomicDetectionCheckpointer(torch.nn.Linear(2, 2), str(run))
    checkpointer.save("model_0000001", iteration=1)
    with pytest.raises(Exception):
        checkpointer.save("model_0000001", iteration=2, unpicklable=lambda: None)
    assert sorted(os.listdir(run)) == ["last_checkpoint", "model_0000001.pth"]
    assert torch.load(run / "model_0000001.pth")["iteration"] == 1
    assert (run / "last_checkpoint").read_text() == "model_0000001.pth"
    # checkpoint, tag, failed checkpoint: three distinct temporaries next to their targets.
    assert len(set(opened)) == 3 and all(is_temporary(path) and path.startswith(str(run)) for path in opened)
