"""Seesaw Loss (Wang et al., CVPR 2021): factors and loss by hand, gradients, online counts (one and two
ranks), no host sync, inference, the LVIS config, and a tiny train / checkpoint / --eval-only run."""
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model
from detectron2.utils.events import EventStorage

import lda_det
from lda_det import PredictorROIHeads, SeesawOutputLayers, SeesawROIHeads, add_lda_config, model_zoo
from lda_det.heads.seesaw import NormedLinear, seesaw_cross_entropy, seesaw_log_factors

from ..dispatched_ops import SYNCING_OPS, RecordOps
from ..helpers import launch_on_ranks
from .conftest import DEMO_CONFIG, load_train_net, tiny_cfg, tiny_opts
from .seesaw_worker import STEPS, make_predictor, rank_batch, seesaw_on_rank, train_steps
from .test_predictor import make_proposals

P, Q, EPS = 0.8, 2.0, 1e-2
COUNTS = [100, 10, 1]  # N of classes 0, 1, 2
# (ground truth i, class logits z) of three foreground proposals.
ROWS = [(0, [1.0, 2.0, 0.5]),   # head class; a more frequent-looking wrong class 1 scores above it
        (2, [0.3, -0.2, 0.1]),  # the rarest class: no mitigation against anyone
        (1, [5.0, -3.0, 0.0])]  # sigma_i ~ 3e-4 < eps: the floor on sigma_i decides C_ij


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def hand_factors():
    """M and C of ROWS, by hand from the paper's definitions (row r = the factors of its ground truth)."""
    mitigation = [
        [1.0, (10 / 100) ** P, (1 / 100) ** P],  # i = 0 (N = 100): both other classes are rarer
        [1.0, 1.0, 1.0],                         # i = 2 (N = 1): N_j >= N_i for every j
        [1.0, 1.0, (1 / 10) ** P],               # i = 1 (N = 10): class 0 is more frequent, 2 rarer
    ]
    s0 = softmax(ROWS[0][1])
    s2 = softmax(ROWS[2][1])
    assert s2[1] < EPS and s2[2] < EPS < s2[0]  # what row 3's entries below rely on
    compensation = [
        [1.0, (s0[1] / s0[0]) ** Q, 1.0],        # sigma_1 > sigma_0 (= e^(2 - 1), so C_01 = e^2); sigma_2 < sigma_0
        [math.exp(0.2) ** Q, 1.0, 1.0],          # sigma_0 / sigma_2 = e^(0.3 - 0.1) > 1; sigma_1 < sigma_2
        [(s2[0] / EPS) ** Q, 1.0, 1.0],          # sigma_i floored at eps; sigma_2 / eps < 1
    ]
    assert compensation[0][1] == pytest.approx(math.exp(2.0))
    return mitigation, compensation


def hand_losses():
    """-log sigma_hat_i, sigma_hat_i = e^z_i / (e^z_i + sum_{j != i} M_ij C_ij e^z_j), per row of ROWS."""
    mitigation, compensation = hand_factors()
    losses = []
    for r, (i, z) in enumerate(ROWS):
        denominator = math.exp(z[i]) + sum(mitigation[r][j] * compensation[r][j] * math.exp(z[j])
                                           for j in range(3) if j != i)
        losses.append(-math.log(math.exp(z[i]) / denominator))
    return losses


def rows_as_tensors(dtype=torch.float64):
    targets = torch.tensor([i for i, _ in ROWS])
    logits = torch.tensor([z for _, z in ROWS], dtype=dtype)
    return logits, targets


def test_factors_match_hand_computation():
    logits, targets = rows_as_tensors()
    log_mitigation, log_compensation = seesaw_log_factors(logits, targets, torch.tensor(COUNTS), P, Q, EPS)
    mitigation, compensation = hand_factors()
    torch.testing.assert_close(log_mitigation.exp(), torch.tensor(mitigation, dtype=torch.float64))
    torch.testing.assert_close(log_compensation.exp(), torch.tensor(compensation, dtype=torch.float64))
    per_row = seesaw_cross_entropy(logits, targets, torch.tensor(COUNTS), P, Q, EPS)
    torch.testing.assert_close(per_row, torch.tensor(hand_losses(), dtype=torch.float64))
    # Without the factors it is plain cross-entropy, and the factors do change these rows.
    plain = [-math.log(softmax(z)[i]) for i, z in ROWS]
    torch.testing.assert_close(seesaw_cross_entropy(logits, targets, torch.tensor(COUNTS), 0.0, 0.0, EPS),
                               torch.tensor(plain, dtype=torch.float64))
    assert all(abs(a - b) > 1e-3 for a, b in zip(hand_losses(), plain))


def test_half_precision_logits_with_large_counts_stay_finite():
    """Under autocast the logits may be float16: counts past its range (65504) must not turn into inf."""
    logits, targets = rows_as_tensors(torch.float16)
    counts = torch.tensor([10 ** 8, 10 ** 6, 1])
    per_row = seesaw_cross_entropy(logits.requires_grad_(True), targets, counts, P, Q, EPS)
    assert per_row.dtype == torch.float32 and torch.isfinite(per_row).all()
    per_row.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # Row 0 (class 0, N = 1e8) against class 1 (N = 1e6): M_01 = (1e-2)^0.8.
    log_mitigation, _ = seesaw_log_factors(logits, targets, counts, P, Q, EPS)
    assert log_mitigation[0, 1].item() == pytest.approx(P * math.log(1e-2), rel=1e-6)


# Objectness logits (fg, bg) of the three positives above and two background proposals.
OBJECTNESS = [[2.0, -1.0], [0.5, 0.5], [-0.3, 0.7], [0.1, 1.2], [1.5, -0.5]]


def hand_batch():
    """Scores (5, C + 2) and proposals: ROWS as positives, then 2 background proposals (label 3)."""
    class_logits = [z for _, z in ROWS] + [[9.0, -9.0, 0.0], [0.0, 4.0, -2.0]]
    scores = torch.tensor([z + o for z, o in zip(class_logits, OBJECTNESS)], dtype=torch.float64, requires_grad=True)
    proposals = make_proposals([[i for i, _ in ROWS] + [3, 3]], dtype=torch.float64)
    return scores, proposals


def test_head_losses_match_hand_computation():
    """The head counts this step's positives first (as mmdet), then divides both classification sums by
    the number of sampled proposals (mmdet's avg_factor), not the class term by the positives."""
    predictor = make_predictor(num_classes=3).double()
    predictor.class_counts.copy_(torch.tensor([99, 9, 0]))  # + this batch's one positive each = COUNTS
    scores, proposals = hand_batch()
    deltas = torch.zeros(5, 12, dtype=torch.float64, requires_grad=True)
    with EventStorage(0):
        losses = predictor.losses((scores, deltas), proposals)
    assert predictor.class_counts.tolist() == COUNTS
    assert set(losses) == {"loss_cls_classes", "loss_cls_objectness", "loss_box_reg"}
    assert losses["loss_cls_classes"].item() == pytest.approx(sum(hand_losses()) / 5, rel=1e-12)
    objectness_targets = [0, 0, 0, 1, 1]  # column 0 = fg, 1 = bg
    expected_objectness = sum(-math.log(softmax(o)[t]) for o, t in zip(OBJECTNESS, objectness_targets)) / 5
    assert losses["loss_cls_objectness"].item() == pytest.approx(expected_objectness, rel=1e-12)
    assert torch.isfinite(losses["loss_box_reg"]) and losses["loss_box_reg"] > 0
    # The background rows' class logits get no gradient; their objectness logits do.
    losses["loss_cls_classes"].backward()
    assert scores.grad[3:, :3].abs().sum() == 0 and scores.grad[:3, :3].abs().sum() > 0


def test_loss_weight_scales_both_classification_terms():
    losses = {}
    for weight in (1.0, 2.5):
        predictor = make_predictor(num_classes=3, seesaw_loss_weight=weight).double()
        scores, proposals = hand_batch()
        with EventStorage(0):
            losses[weight] = predictor.losses((scores, torch.zeros(5, 12, dtype=torch.float64)), proposals)
    for name in ("loss_cls_classes", "loss_cls_objectness"):
        torch.testing.assert_close(losses[2.5][name], 2.5 * losses[1.0][name])
    torch.testing.assert_close(losses[2.5]["loss_box_reg"], losses[1.0]["loss_box_reg"])


def test_gradcheck_in_float64():
    counts = torch.tensor(COUNTS)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    # Mitigation only: the factors are constants, the loss is smooth in z.
    assert torch.autograd.gradcheck(lambda z: seesaw_cross_entropy(z, targets, counts, P, 0.0, EPS), (logits,))
    # With compensation, where the ground truth has the largest probability: C_ij = 1 around z.
    targets = logits.detach().argmax(1)
    assert torch.autograd.gradcheck(lambda z: seesaw_cross_entropy(z, targets, counts, P, Q, EPS), (logits,))


def test_gradient_treats_the_compensation_factor_as_a_constant():
    """sigma is detached (as in mmdet): d loss / d z_j = S_ij e^z_j / D for j != i, e^z_i / D - 1 for i,
    with D = e^z_i + sum_{j != i} S_ij e^z_j and S = M * C from the hand table."""
    logits, targets = rows_as_tensors()
    logits.requires_grad_(True)
    seesaw_cross_entropy(logits, targets, torch.tensor(COUNTS), P, Q, EPS).sum().backward()
    mitigation, compensation = hand_factors()
    expected = []
    for r, (i, z) in enumerate(ROWS):
        weights = [1.0 if j == i else mitigation[r][j] * compensation[r][j] for j in range(3)]
        denominator = sum(w * math.exp(v) for w, v in zip(weights, z))
        expected.append([w * math.exp(v) / denominator - (1.0 if j == i else 0.0)
                         for j, (w, v) in enumerate(zip(weights, z))])
    torch.testing.assert_close(logits.grad, torch.tensor(expected, dtype=torch.float64))


def test_counts_accumulate_across_steps_and_travel_in_the_state_dict():
    predictor = make_predictor(num_classes=3)
    assert predictor.class_counts.dtype == torch.int64 and predictor.class_counts.tolist() == [0, 0, 0]
    for step, gt_classes in enumerate(([[0, 0, 1], [3, -1]], [[2, 2, 2, 0], [3]])):
        proposals = make_proposals(gt_classes, dtype=torch.float32)
        features = torch.randn(sum(len(g) for g in gt_classes), 6)
        with EventStorage(step):
            predictor.losses(predictor(features), proposals)
        # Background (3) and ignored (-1) proposals are not counted.
        assert predictor.class_counts.tolist() == ([2, 1, 0] if step == 0 else [3, 1, 3])
    assert predictor.state_dict()["class_counts"].tolist() == [3, 1, 3]
    other = make_predictor(num_classes=3)
    other.load_state_dict(predictor.state_dict())
    assert other.class_counts.tolist() == [3, 1, 3]


def test_two_gloo_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    """2 ranks with different, unevenly sized proposals for 2 steps end with the same counts, equal to one
    process's on both ranks' proposals; their mean loss and DDP-averaged gradients equal its too."""
    prefix = str(tmp_path / "seesaw")
    launch_on_ranks(seesaw_on_rank, 2, prefix)
    ranks = [torch.load(f"{prefix}.rank{r}.pt") for r in range(2)]
    batches = []
    for step in range(STEPS):
        parts = [rank_batch(rank, step) for rank in range(2)]
        batches.append((torch.cat([f for f, _ in parts]), [p for _, image_proposals in parts for p in image_proposals]))
    losses, gradients, counts = train_steps(batches)
    # Rank 0: classes 0 x4, 1, 2 then 1 x4, 2, 3; rank 1: 3, 1 x2 then 1, 3 x2 (the ignored -1 not counted).
    assert counts.tolist() == [4, 1 + 2 + 4 + 1, 1 + 1, 1 + 1 + 2]
    for rank in ranks:
        assert torch.equal(rank["counts"], counts)
    torch.testing.assert_close((ranks[0]["losses"] + ranks[1]["losses"]) / 2, losses, rtol=1e-12, atol=0)
    for name, grad in gradients.items():
        assert grad.abs().sum() > 0, name
        for rank in ranks:
            torch.testing.assert_close(rank["gradients"][name], grad, rtol=1e-10, atol=1e-12, msg=name)


# bincount too: a host sync on CUDA when its length is not given.
SYNCING_OPS = SYNCING_OPS + ("bincount",)


def record_classification_step(gt_classes):
    """Ops of the head's loss step and backward, box regression aside (detectron2's, with its nonzero)."""
    predictor = make_predictor(num_classes=50, log_period=20)
    predictor.box_reg_loss = lambda proposal_boxes, gt_boxes, deltas, gt: deltas.sum() * 0
    proposals = make_proposals([gt_classes], dtype=torch.float32)
    features = torch.randn(len(gt_classes), 6)
    with EventStorage(1), RecordOps() as recorder:  # iteration 1: no logging (a host sync by design)
        losses = predictor.losses(predictor(features), proposals)
        sum(losses.values()).backward()
    return recorder.ops


def test_loss_step_dispatches_no_syncing_op_and_no_loop_over_classes():
    few_classes = record_classification_step([1, 1, 1, 1, 2, 2, 50, 50])
    assert not [op for op in few_classes if any(s in op for s in SYNCING_OPS)]
    many_classes = record_classification_step([0, 5, 10, 15, 20, 25, 30, 50])
    assert len(few_classes) == len(many_classes)


def test_predict_probs_and_inference_give_valid_instances():
    predictor = make_predictor(num_classes=3).double()
    scores, proposals = hand_batch()
    scores = scores.detach()
    probs = predictor.predict_probs((scores, None), proposals)[0]
    assert probs.shape == (5, 4)
    torch.testing.assert_close(probs.sum(1), torch.ones(5, dtype=torch.float64))
    # Row 0 by hand: softmax(z)_c * p(fg), and p(bg) last.
    z, objectness = ROWS[0][1], OBJECTNESS[0]
    fg = softmax(objectness)[0]
    expected = [s * fg for s in softmax(z)] + [1 - fg]
    torch.testing.assert_close(probs[0], torch.tensor(expected, dtype=torch.float64))

    # detectron2's inference (float32, as a model runs).
    proposals = make_proposals([[i for i, _ in ROWS] + [3, 3]], dtype=torch.float32)
    deltas = torch.randn(5, 12) * 0.1
    instances, _ = predictor.float().inference((scores.float(), deltas), proposals)
    result = instances[0]
    assert len(result) > 0 and {"pred_boxes", "scores", "pred_classes"} <= set(result.get_fields())
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert ((result.pred_classes >= 0) & (result.pred_classes < 3)).all()


def test_normed_linear_is_a_scaled_cosine():
    layer = NormedLinear(4, 3, temperature=20.0)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(5, 4)
    cosine = F.normalize(x, dim=1) @ F.normalize(layer.weight, dim=1).t()
    torch.testing.assert_close(layer(x), 20.0 * cosine + layer.bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer(3.0 * x), layer(x), rtol=1e-5, atol=1e-5)  # scale-free in x


EXPECTED_DEFAULTS = {"P": 0.8, "Q": 2.0, "EPS": 0.01, "LOSS_WEIGHT": 1.0, "COSINE_CLASSIFIER": True,
                     "TEMPERATURE": 20.0}


def test_keys_defaults_comments_and_registry():
    cfg = get_cfg()
    add_lda_config(cfg)
    assert dict(cfg.MODEL.SEESAW) == EXPECTED_DEFAULTS
    source = open(os.path.join(os.path.dirname(lda_det.__file__), "config.py")).read().splitlines()
    for number, line in enumerate(source):
        if re.match(r"\s*_C\.MODEL\.SEESAW\.[A-Z_]+ = ", line):
            assert source[number - 1].strip().startswith("#"), f"config.py:{number + 1} has no comment"
    assert ROI_HEADS_REGISTRY.get("SeesawROIHeads") is SeesawROIHeads


def test_lvis_config_builds_a_1203_class_model_without_data(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./datasets/lvis here
    cfg = model_zoo.get_config("LVIS-LDA/seesaw_mask_rcnn_R_50_FPN_1x.yaml")
    baseline = model_zoo.get_config("LVIS-LDA/baseline_mask_rcnn_R_50_FPN_1x.yaml")
    # Same data (RFS 1e-3), schedule and clipping as the baseline: only the ROI head differs.
    assert cfg.MODEL.ROI_HEADS.NAME == "PredictorROIHeads" and cfg.MODEL.ROI_BOX_HEAD.PREDICTOR == "SeesawOutputLayers"
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler" and cfg.DATALOADER.REPEAT_THRESHOLD == 1e-3
    assert dict(cfg.MODEL.SEESAW) == EXPECTED_DEFAULTS
    predictor_name = cfg.MODEL.ROI_BOX_HEAD.PREDICTOR
    cfg.MODEL.ROI_HEADS.NAME = baseline.MODEL.ROI_HEADS.NAME
    cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = baseline.MODEL.ROI_BOX_HEAD.PREDICTOR
    assert cfg == baseline
    cfg.MODEL.ROI_HEADS.NAME, cfg.MODEL.ROI_BOX_HEAD.PREDICTOR = "PredictorROIHeads", predictor_name
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    model = build_model(cfg)
    predictor = model.roi_heads.box_predictor
    assert type(model.roi_heads) is PredictorROIHeads and type(predictor) is SeesawOutputLayers
    assert isinstance(predictor.cls_score, NormedLinear) and predictor.cls_score.out_features == 1203 + 2
    assert predictor.class_counts.shape == (1203,) and model.roi_heads.mask_head.predictor.out_channels == 1203


def _val_inputs(num_images=2):
    dicts = DatasetCatalog.get("synthetic_lt_val")[:num_images]
    return [{"image": torch.as_tensor(utils.read_image(d["file_name"], "BGR").transpose(2, 0, 1).copy()),
             "height": d["height"], "width": d["width"]} for d in dicts]


def test_tiny_training_run_checkpoint_and_eval_only(synthetic_root, tmp_path):
    head = "SeesawROIHeads"
    train_net = load_train_net()
    parser = train_net.default_argument_parser()
    config_file = model_zoo.get_config_file(DEMO_CONFIG)
    # No evaluation at the end of training (DATASETS.TEST empty): --eval-only below evaluates the checkpoint.
    args = parser.parse_args(["--config-file", config_file] + tiny_opts(tmp_path, head=head) + ["DATASETS.TEST", "()"])
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    for name in ("loss_cls_classes", "loss_cls_objectness", "loss_box_reg", "loss_mask", "total_loss"):
        values = [value for value, _ in history[name].values()]
        assert len(values) == cfg.SOLVER.MAX_ITER and all(math.isfinite(v) for v in values), name
    counts = trainer.model.roi_heads.box_predictor.class_counts.clone()
    assert counts.sum() > 0
    weights = os.path.join(tmp_path, "model_final.pth")
    assert os.path.isfile(weights)

    eval_args = parser.parse_args(["--config-file", config_file, "--eval-only"]
                                  + tiny_opts(tmp_path / "eval", head=head) + ["MODEL.WEIGHTS", weights])
    results = train_net.main(eval_args)
    assert set(results) == {"bbox", "segm"} and {"AP", "APr", "APc", "APf"} <= set(results["bbox"])
    assert all(math.isfinite(v) for v in results["bbox"].values())

    loaded = build_model(tiny_cfg(head=head))
    DetectionCheckpointer(loaded).load(weights)
    assert torch.equal(loaded.roi_heads.box_predictor.class_counts, counts)
    loaded.eval()
    with torch.no_grad():
        outputs = [out["instances"] for out in loaded(_val_inputs())]
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    for instances in outputs:
        assert len(instances) > 0
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert ((instances.pred_classes >= 0) & (instances.pred_classes < num_classes)).all()
        assert instances.pred_masks.shape[0] == len(instances)
