"""Every registered box predictor builds and trains on an FPN (PredictorROIHeads) and a C4 (PredictorRes5ROIHeads)
backbone: 3 SGD iterations of the tiny synthetic model, finite losses, the predictor's weights moved."""
import math

import pytest
import torch
from detectron2.data import build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model

from lda_det.heads import BOX_PREDICTOR_REGISTRY

from .conftest import tiny_cfg

# The keys a predictor needs beyond the demo config: the federated loss is sigmoid CE with USE_FED_LOSS, over at
# most NUM_CLASSES + 1 = 25 classes of the demo (detectron2's default, 50, is LVIS's).
PREDICTOR_OPTS = {"FederatedOutputLayers": ["MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE", True,
                                            "MODEL.ROI_BOX_HEAD.USE_FED_LOSS", True,
                                            "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES", 8]}
# A ResNet-18 C4 backbone (res4 into RPN and ROI pooling, res5 in the ROI head), as small as detectron2 allows.
C4_OPTS = ["MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.RESNETS.DEPTH", 18,
           "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.RES5_DILATION", 1,
           "MODEL.RESNETS.OUT_FEATURES", ["res4"], "MODEL.RPN.IN_FEATURES", ["res4"],
           "MODEL.ROI_HEADS.IN_FEATURES", ["res4"], "MODEL.ANCHOR_GENERATOR.SIZES", [[16, 32, 64]]]
BACKBONES = {"FPN": ("PredictorROIHeads", []), "C4": ("PredictorRes5ROIHeads", C4_OPTS)}


class LossRecorder(SimpleTrainer):
    """SimpleTrainer that keeps every iteration's losses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded = []

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        self.recorded.append({k: float(v) for k, v in loss_dict.items()})
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("predictor", sorted(BOX_PREDICTOR_REGISTRY._obj_map))
def test_every_predictor_trains_on_fpn_and_c4(predictor, backbone, synthetic_root):
    heads, backbone_opts = BACKBONES[backbone]
    cfg = tiny_cfg(head=heads, opts=backbone_opts + ["MODEL.ROI_BOX_HEAD.PREDICTOR", predictor]
                   + PREDICTOR_OPTS.get(predictor, []))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg)
    assert type(model.roi_heads).__name__ == heads and type(model.roi_heads.box_predictor).__name__ == predictor
    before = {k: v.detach().clone() for k, v in model.roi_heads.box_predictor.named_parameters()}
    trainer = LossRecorder(model, build_detection_train_loader(cfg),
                           torch.optim.SGD(model.parameters(), lr=cfg.SOLVER.BASE_LR, momentum=0.9))
    trainer.train(0, 3)
    assert len(trainer.recorded) == 3
    assert all(math.isfinite(v) for losses in trainer.recorded for v in losses.values())
    moved = [k for k, v in model.roi_heads.box_predictor.named_parameters() if not torch.equal(v, before[k])]
    assert "bbox_pred.weight" in moved and len(moved) > 2, moved
