"""EQL: Fast R-CNN's box predictor with the Equalization Loss (Tan et al., CVPR 2020).

C sigmoid classifiers (as the official eql.detectron2; a background proposal has all C
targets 0) trained with binary cross-entropy weighted per proposal r and class j by

    w_j = 1 - E(r) T_lambda(f_j) (1 - y_j)                               (Eq. 3-5)

E(r) = 1 for a foreground proposal, T_lambda(f_j) = 1 when the class's image frequency
f_j (training images containing j / annotated training images) is below lambda: a rare
class gets no negative gradient from other classes' objects, and still from background.
The sum is divided by the number of sampled proposals, as detectron2's sigmoid CE.
Inference: scores sigmoid(z_j), then the parent's inference (per-class NMS).

Initialisation as the official eql.detectron2 (projects/EQL/eql/fast_rcnn.py, EQLFastRCNNOutputLayers):
the C-way classifier's weight N(0, 0.01^2), its bias -log((1 - pi) / pi) with pi = MODEL.EQL.PRIOR_PROB
= 0.001 (theirs: prior_prob = 0.001); box regression N(0, 0.001^2), bias 0 (detectron2's, theirs too).
"""
import logging
import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ..class_counts import image_frequency_for_model
from ..proposals import sampled_targets
from .registry import BOX_PREDICTOR_REGISTRY

logger = logging.getLogger(__name__)

__all__ = ["EQLOutputLayers", "equalization_loss"]


def equalization_loss(logits: torch.Tensor, gt_classes: torch.Tensor, rare: torch.Tensor) -> torch.Tensor:
    """Eq. 3-5 summed over proposals and classes, divided by the number of proposals.

    Args:
        logits: (R, C) sigmoid logits.
        gt_classes: (R,) in [0, C], C = background.
        rare: (C,) T_lambda(f_j), 1 for the classes below the frequency threshold.
    """
    num_proposals, num_classes = logits.shape
    targets = F.one_hot(gt_classes, num_classes + 1)[:, :num_classes].to(logits.dtype)  # background: all 0
    foreground = (gt_classes < num_classes).to(logits.dtype).unsqueeze(1)  # E(r)
    weight = 1 - foreground * rare.to(logits.dtype).unsqueeze(0) * (1 - targets)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (weight * bce).sum() / max(num_proposals, 1)


@BOX_PREDICTOR_REGISTRY.register()
class EQLOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers with C sigmoid classifiers and the Equalization Loss."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, image_counts: Optional[Sequence[int]], num_images: int,
                 lambda_: float = 1.76e-3, prior_prob: float = 0.001, log_period: int = 20, **kwargs):
        """
        Args:
            image_counts: training images containing each class, or None when unknown at build time
                (inference without the training data; a checkpoint's then load into the buffers).
            num_images: annotated training images, the denominator of f_j.
            lambda_: the frequency threshold of T_lambda.
            prior_prob: initial sigmoid probability of every class (bias -log((1 - p) / p)).
            log_period: iterations between logs of the classification accuracy.
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        if self.use_fed_loss:
            raise ValueError("EQLOutputLayers replaces the classification loss: MODEL.ROI_BOX_HEAD.USE_FED_LOSS "
                             "must be False")
        if image_counts is not None and len(image_counts) != self.num_classes:
            raise ValueError(f"{len(image_counts)} image counts for {self.num_classes} classes")
        # C logits, no background column: a background proposal is one all C classifiers reject.
        self.cls_score = nn.Linear(self.cls_score.in_features, self.num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))
        # f_j's inputs travel in the checkpoint (persistent buffers); num_images 0 = not known yet.
        known = image_counts is not None
        self.register_buffer("image_counts", torch.as_tensor(
            image_counts if known else [0] * self.num_classes, dtype=torch.int64))
        self.register_buffer("num_images", torch.tensor(num_images if known else 0, dtype=torch.int64))
        self.frequencies_known = known
        self.lambda_ = lambda_
        self.log_period = log_period

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        frequency = image_frequency_for_model(cfg)
        ret.update({
            "image_counts": None if frequency is None else frequency[0],
            "num_images": 0 if frequency is None else frequency[1],
            "lambda_": cfg.MODEL.EQL.LAMBDA,
            "prior_prob": cfg.MODEL.EQL.PRIOR_PROB,
            "log_period": cfg.MODEL.ROI_BOX_HEAD.LOG_PERIOD,
        })
        return ret

    def rare_classes(self) -> torch.Tensor:
        """T_lambda(f_j) as a (C,) 0/1 tensor, on the buffers' device (no host sync)."""
        frequency = self.image_counts.double() / self.num_images.clamp(min=1).double()
        return (frequency < self.lambda_).float()

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """"loss_cls" (the Equalization Loss) and "loss_box_reg" (Fast R-CNN's)."""
        scores, proposal_deltas = predictions
        if not self.frequencies_known:
            raise RuntimeError("EQLOutputLayers has no class frequencies to train with: the files of "
                               "DATASETS.TRAIN were not on disk when the model was built and no checkpoint "
                               "carrying them was loaded (see lda_det.class_counts)")
        gt_classes, proposal_boxes, gt_boxes = sampled_targets(proposals, proposal_deltas.device)
        if get_event_storage().iter % self.log_period == 0:
            # A zero background logit: "background" wins when every class's sigmoid is below 1/2.
            _log_classification_stats(torch.cat([scores.detach(), scores.new_zeros(len(scores), 1)], 1), gt_classes)
        losses = {
            "loss_cls": equalization_loss(scores, gt_classes, self.rare_classes()),
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def predict_probs(self, predictions, proposals: List[Instances]):
        """Per image (Ri, C + 1): sigmoid(z_j), and a 0 in the background column that inference drops."""
        scores, _ = predictions
        probs = torch.sigmoid(scores)
        probs = torch.cat([probs, probs.new_zeros(len(probs), 1)], dim=1)
        return probs.split([len(p) for p in proposals], dim=0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        saved = state_dict.get(prefix + "num_images")
        if saved is not None and int(saved) > 0:
            # The checkpoint's frequencies are loaded into the buffers and win over the recomputed ones.
            if self.frequencies_known and not torch.equal(
                    torch.as_tensor(state_dict[prefix + "image_counts"]).cpu(), self.image_counts.cpu()):
                logger.warning(f"{prefix}image_counts: the checkpoint's class frequencies differ from those of "
                               f"the config; using the checkpoint's")
            self.frequencies_known = True
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

