"""The compared detection heads start as their authors' code starts them: EQL, Seesaw, the federated loss.

Each reference initialisation is transcribed below into a small torch function and compared with the
project's predictor, built alone (no model): biases exactly, weight laws by a two-sample Kolmogorov-Smirnov
test against draws of the reference (and the standard deviation within 2 %), exactly where the draw
order is the same. (EQLv2's bias: tests/det/test_eqlv2.py::test_classifier_starts_as_the_official_head.)

References (stored copies of the public repositories, commit = the file's snapshot read):
  tztztztztz/eql.detectron2 @ 8164f4ae20bccfa86f78e996ce4af8b4d5573ffd, projects/EQL/eql/fast_rcnn.py
  open-mmlab/mmdetection: mmdet/models/layers/normed_predictor.py @ 0c5159285b4d69e75679c2e34a08415fe2bec8d8,
      mmdet/models/roi_heads/bbox_heads/bbox_head.py @ 01a796246d5f3d42d3d1338653e65cfc3e6bd49e,
      mmdet/models/losses/seesaw_loss.py @ 08282a60904d22abc16bc8409d341ce1dd48b613,
      configs/seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_random-ms-2x_lvis-v1.py
      @ 4d839862fe2f8c77f6dc0b9a46fbee266603f297
  xingyizhou/CenterNet2: projects/CenterNet2/centernet/modeling/roi_heads/custom_fast_rcnn.py
      @ 2c87c1bad86fb07dc155be3e3d36b9aabbe768e1, projects/CenterNet2/centernet/config.py
      @ 68d89b8d6519e984b3eacaedd2feb84773a9bf65
"""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from scipy import stats
from torch import nn

from lda_det import EQLOutputLayers, FederatedOutputLayers, SeesawOutputLayers, add_lda_config, model_zoo
from lda_det.heads.seesaw import NormedLinear

DIM, NUM_CLASSES = 256, 200  # 51,200 classifier weights: enough for the law tests, a fraction of a second
BOX = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))


def same_law(ours: torch.Tensor, theirs: torch.Tensor, std: float) -> None:
    """Two-sample KS of the two weight tensors, and each one's std within 2 % of ``std`` (or 4 standard errors
    of the estimate, 1 / sqrt(2 n) relative, for small tensors), mean within 5 standard errors of 0."""
    ours, theirs = ours.detach().flatten().double(), theirs.detach().flatten().double()
    pvalue = stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue
    assert pvalue > 1e-3, f"KS p-value {pvalue:.2e}: not the reference's law"
    for weights in (ours, theirs):
        assert weights.std().item() == pytest.approx(std, rel=max(0.02, 4 / (2 * weights.numel()) ** 0.5))
        assert abs(weights.mean().item()) < 5 * std / weights.numel() ** 0.5


# ---------------------------------------------------------------- EQL (eql.detectron2)
def eql_reference_layers(input_size, num_classes, box_dim=4):
    """projects/EQL/eql/fast_rcnn.py lines 31-50 (EQLFastRCNNOutputLayers.__init__): cls_score nn.Linear(D, C) (no
    background column), normal_(std=0.01); bbox_pred normal_(std=0.001), bias 0; cls bias -log((1 - p) / p) with
    prior_prob = 0.001 ("roughly 1 / num_classes (1231)")."""
    cls_score = nn.Linear(input_size, num_classes)
    bbox_pred = nn.Linear(input_size, num_classes * box_dim)
    nn.init.normal_(cls_score.weight, std=0.01)
    nn.init.normal_(bbox_pred.weight, std=0.001)
    nn.init.constant_(bbox_pred.bias, 0)
    prior_prob = 0.001
    bias_value = -math.log((1 - prior_prob) / prior_prob)
    torch.nn.init.constant_(cls_score.bias, bias_value)
    return cls_score, bbox_pred


def test_eql_predictor_starts_as_eql_detectron2():
    """EQL: tztztztztz/eql.detectron2 projects/EQL/eql/fast_rcnn.py lines 31-50 (EQLFastRCNNOutputLayers.__init__)."""
    torch.manual_seed(0)
    ours = EQLOutputLayers(ShapeSpec(channels=DIM), box2box_transform=BOX, num_classes=NUM_CLASSES,
                           image_counts=[1] * NUM_CLASSES, num_images=10)
    torch.manual_seed(1)
    cls_score, bbox_pred = eql_reference_layers(DIM, NUM_CLASSES)
    assert ours.cls_score.weight.shape == cls_score.weight.shape  # C sigmoid columns, no background one
    assert torch.equal(ours.cls_score.bias, cls_score.bias)
    assert ours.cls_score.bias[0].item() == pytest.approx(-6.906755, abs=1e-6)
    same_law(ours.cls_score.weight, cls_score.weight, std=0.01)
    assert ours.bbox_pred.weight.shape == bbox_pred.weight.shape and torch.equal(ours.bbox_pred.bias, bbox_pred.bias)
    same_law(ours.bbox_pred.weight, bbox_pred.weight, std=0.001)
    # The config default is the official prior, and the LVIS config keeps it.
    cfg = get_cfg()
    add_lda_config(cfg)
    assert cfg.MODEL.EQL.PRIOR_PROB == 0.001
    assert model_zoo.get_config("LVIS-LDA/eql_mask_rcnn_R_50_FPN_1x.yaml").MODEL.EQL.PRIOR_PROB == 0.001


# ---------------------------------------------------------------- Seesaw (mmdetection)
class MMDetNormedLinear(nn.Linear):
    """mmdet/models/layers/normed_predictor.py lines 10-38 (NormedLinear): init_weights normal_(0, 0.01), bias 0;
    forward W / (|W|^power + eps), x / (|x|^power + eps) * tempearture, F.linear with the bias."""

    def __init__(self, *args, tempearture=20, power=1.0, eps=1e-6, **kwargs):
        super().__init__(*args, **kwargs)
        self.tempearture, self.power, self.eps = tempearture, power, eps
        nn.init.normal_(self.weight, mean=0, std=0.01)
        if self.bias is not None:
            nn.init.constant_(self.bias, 0)

    def forward(self, x):
        weight_ = self.weight / (self.weight.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        x_ = x / (x.norm(dim=1, keepdim=True).pow(self.power) + self.eps)
        return F.linear(x_ * self.tempearture, weight_, self.bias)


def mmdet_seesaw_layers(input_size, num_classes, box_dim=4):
    """The seesaw configs' bbox head: fc_cls = NormedLinear(tempearture=20) with SeesawLoss.get_cls_channels = C + 2
    outputs (seesaw_loss.py, bbox_head.py lines 62-70); BBoxHead's init_cfg (bbox_head.py lines 80-91) draws fc_cls
    Normal(std=0.01) and fc_reg Normal(std=0.001), biases 0 (mmcv's NormalInit default)."""
    fc_cls = MMDetNormedLinear(input_size, num_classes + 2, tempearture=20)
    fc_reg = nn.Linear(input_size, num_classes * box_dim)
    for layer, std in ((fc_cls, 0.01), (fc_reg, 0.001)):
        nn.init.normal_(layer.weight, std=std)
        nn.init.constant_(layer.bias, 0)
    return fc_cls, fc_reg


def test_seesaw_predictor_starts_as_mmdetections_seesaw_head():
    """Seesaw: open-mmlab/mmdetection normed_predictor.py NormedLinear, bbox_head.py BBoxHead (fc_cls / fc_reg and
    their init_cfg), seesaw_loss.py get_cls_channels (C classes + 2 objectness columns, the same layer, so the
    objectness columns start as the class columns), the seesaw config's cls_predictor_cfg (tempearture=20)."""
    torch.manual_seed(0)
    ours = SeesawOutputLayers(ShapeSpec(channels=DIM), box2box_transform=BOX, num_classes=NUM_CLASSES)
    torch.manual_seed(1)
    fc_cls, fc_reg = mmdet_seesaw_layers(DIM, NUM_CLASSES)
    assert type(ours.cls_score) is NormedLinear and ours.cls_score.temperature == fc_cls.tempearture == 20
    assert ours.cls_score.weight.shape == fc_cls.weight.shape == (NUM_CLASSES + 2, DIM)
    assert torch.equal(ours.cls_score.bias, fc_cls.bias)  # 0, objectness included
    same_law(ours.cls_score.weight, fc_cls.weight, std=0.01)
    same_law(ours.cls_score.weight[NUM_CLASSES:], fc_cls.weight[NUM_CLASSES:], std=0.01)  # the 2 objectness rows
    assert ours.bbox_pred.weight.shape == fc_reg.weight.shape and torch.equal(ours.bbox_pred.bias, fc_reg.bias)
    same_law(ours.bbox_pred.weight, fc_reg.weight, std=0.001)


def test_seesaw_cosine_classifier_is_mmdetections_normed_linear():
    """Seesaw: mmdet/models/layers/normed_predictor.py NormedLinear.forward (power 1, eps 1e-6), value and gradient
    w.r.t. the features and the weight, in float64, with the same parameters."""
    torch.manual_seed(0)
    theirs = MMDetNormedLinear(16, 7, tempearture=20).double()
    ours = NormedLinear(16, 7, temperature=20.0).double()
    with torch.no_grad():
        theirs.bias.normal_()
        ours.weight.copy_(theirs.weight)
        ours.bias.copy_(theirs.bias)
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, rtol=1e-12, atol=1e-12)
    grads_ours = torch.autograd.grad(out_ours.square().sum(), [x, ours.weight])
    grads_theirs = torch.autograd.grad(out_theirs.square().sum(), [x, theirs.weight])
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_seesaw_lvis_config_uses_the_cosine_classifier_of_mmdetections_configs():
    """configs/seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_random-ms-2x_lvis-v1.py: cls_predictor_cfg=dict(
    type='NormedLinear', tempearture=20)."""
    seesaw = model_zoo.get_config("LVIS-LDA/seesaw_mask_rcnn_R_50_FPN_1x.yaml").MODEL.SEESAW
    assert (seesaw.COSINE_CLASSIFIER, seesaw.TEMPERATURE) == (True, 20.0)


# ---------------------------------------------------------------- federated loss (CenterNet2; detectron2's loss)
def centernet2_reference_layers(input_size, num_classes, prior_prob=0.01, box_dim=4):
    """CenterNet2 custom_fast_rcnn.py CustomFastRCNNOutputLayers.__init__ (super().__init__, i.e. detectron2's
    FastRCNNOutputLayers: cls_score nn.Linear(D, C + 1) and bbox_pred nn.Linear, normal_ 0.01 / 0.001, biases 0;
    then with USE_SIGMOID_CE: constant_(cls_score.bias, -log((1 - prior_prob) / prior_prob)),
    ROI_BOX_HEAD.PRIOR_PROB = 0.01 in centernet/config.py)."""
    cls_score = nn.Linear(input_size, num_classes + 1)
    bbox_pred = nn.Linear(input_size, num_classes * box_dim)
    nn.init.normal_(cls_score.weight, std=0.01)
    nn.init.normal_(bbox_pred.weight, std=0.001)
    for layer in (cls_score, bbox_pred):
        nn.init.constant_(layer.bias, 0)
    bias_value = -math.log((1 - prior_prob) / prior_prob)
    nn.init.constant_(cls_score.bias, bias_value)
    return cls_score, bbox_pred


def federated_predictor():
    return FederatedOutputLayers(ShapeSpec(channels=DIM), box2box_transform=BOX, num_classes=NUM_CLASSES,
                                 use_sigmoid_ce=True, use_fed_loss=True,
                                 get_fed_loss_cls_weights=lambda: torch.ones(NUM_CLASSES))


def test_federated_predictor_starts_as_centernet2():
    """Federated loss: xingyizhou/CenterNet2 custom_fast_rcnn.py CustomFastRCNNOutputLayers.__init__ and config.py
    ROI_BOX_HEAD.PRIOR_PROB 0.01. The draws are detectron2's in both, in the same order: equal from one seed."""
    torch.manual_seed(0)
    ours = federated_predictor()
    torch.manual_seed(0)
    cls_score, bbox_pred = centernet2_reference_layers(DIM, NUM_CLASSES)
    for a, b in ((ours.cls_score, cls_score), (ours.bbox_pred, bbox_pred)):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert ours.cls_score.bias[0].item() == pytest.approx(-math.log(99.0))  # p = 0.01 per sigmoid column
    assert torch.sigmoid(ours.cls_score.bias).tolist() == pytest.approx([0.01] * (NUM_CLASSES + 1))
    cfg = get_cfg()
    add_lda_config(cfg)
    assert cfg.MODEL.FEDERATED.PRIOR_PROB == 0.01


def test_federated_head_differs_from_detectron2_only_in_the_bias():
    """detectron2's FastRCNNOutputLayers (the loss used) starts the bias at 0, i.e. p = 0.5 per column; the
    federated head keeps its weights, draw for draw, and its loss."""
    from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

    torch.manual_seed(0)
    ours = federated_predictor()
    torch.manual_seed(0)
    plain = FastRCNNOutputLayers(ShapeSpec(channels=DIM), box2box_transform=BOX, num_classes=NUM_CLASSES,
                                 use_sigmoid_ce=True, use_fed_loss=True,
                                 get_fed_loss_cls_weights=lambda: torch.ones(NUM_CLASSES))
    assert torch.equal(ours.cls_score.weight, plain.cls_score.weight)
    assert torch.equal(plain.cls_score.bias, torch.zeros(NUM_CLASSES + 1))
    assert type(ours).losses is FastRCNNOutputLayers.losses  # the loss is detectron2's
    with pytest.raises(ValueError, match="USE_SIGMOID_CE and USE_FED_LOSS must be True"):
        FederatedOutputLayers(ShapeSpec(channels=DIM), box2box_transform=BOX, num_classes=NUM_CLASSES)
