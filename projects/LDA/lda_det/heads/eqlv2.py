"""EQLv2: Fast R-CNN's box predictor with Equalization Loss v2 (Tan et al., CVPR 2021).

C + 1 sigmoid classifiers (the last one: background, i.e. objectness) trained with binary
cross-entropy, each class j's positives weighted by q_j = 1 + alpha (1 - f(g_j)) and its
negatives by r_j = f(g_j), f(x) = 1 / (1 + exp(-gamma (x - mu))); the background column
weighs 1. g_j is the ratio of the positive to the negative gradient magnitude of class j
accumulated over all past iterations, collected after each loss from the weighted gradients
|sigmoid(z) - y| x weight. The sum is divided by the number of sampled proposals. This follows
the official mmdet/models/losses/eqlv2.py (github tztztztztz/eqlv2), including its inference:
sigmoid(z_j) x (1 - sigmoid(z_bg)) with TEST_WITH_OBJ (its default), and its initialisation:
the classifier's weight normal with std 0.01 (detectron2's, as the official normal_init) and all
C + 1 biases at -log((1 - pi) / pi), pi = MODEL.EQLV2.PRIOR_PROB = 0.001 (official
convfc_bbox_head.py ``init_weights``: ``bias_init_with_prob(0.001)``).

Under DDP the gradient statistics are summed over all ranks after every step, so that every
rank holds those of one process on the global batch.
"""
import math
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..proposals import sampled_targets
from .registry import BOX_PREDICTOR_REGISTRY

__all__ = ["EQLv2OutputLayers", "eqlv2_loss", "gradient_statistics"]

# The official code's g_j before the first step: any ratio well above mu makes every weight 1.
INITIAL_GRADIENT_RATIO = 100.0
# Added to the accumulated negative gradient of g_j = pos / (neg + eps) (official code).
EPS = 1e-10


def eqlv2_loss(logits: torch.Tensor, gt_classes: torch.Tensor, pos_weight: torch.Tensor,
               neg_weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, targets, per-element weights) of EQLv2 on (R, C + 1) logits.

    Args:
        gt_classes: (R,) in [0, C], C = background (its column gets the target 1).
        pos_weight, neg_weight: (C + 1,) q_j and r_j, 1 for the background column.
    """
    num_proposals, num_columns = logits.shape
    targets = F.one_hot(gt_classes, num_columns).to(logits.dtype)
    weight = (pos_weight.unsqueeze(0) * targets + neg_weight.unsqueeze(0) * (1 - targets)).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (weight * bce).sum() / max(num_proposals, 1), targets, weight


@torch.no_grad()
def gradient_statistics(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(2, C): the summed positive / negative gradient magnitudes |sigmoid(z) - y| x weight of the
    C classes (background column left out), over this process's proposals."""
    grad = (torch.sigmoid(logits) - targets).abs() * weight
    positive = (grad * targets).sum(dim=0)
    negative = (grad * (1 - targets)).sum(dim=0)
    return torch.stack([positive, negative])[:, :-1]


@BOX_PREDICTOR_REGISTRY.register()
class EQLv2OutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers with C + 1 sigmoid classifiers and Equalization Loss v2."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0,
                 test_with_obj: bool = True, log_period: int = 20, prior_prob: float = 0.001, **kwargs):
        """
        Args:
            gamma, mu: the mapping f(x) = 1 / (1 + exp(-gamma (x - mu))).
            alpha: the positive weight 1 + alpha (1 - f(g_j)).
            test_with_obj: score sigmoid(z_j) (1 - sigmoid(z_bg)) instead of sigmoid(z_j).
            log_period: iterations between logs of the accuracy and the class weights.
            prior_prob: initial sigmoid probability of every column (bias -log((1 - p) / p)).
            kwargs: FastRCNNOutputLayers' arguments (its (C + 1)-column cls_score is kept).
        """
        super().__init__(input_shape, **kwargs)
        if self.use_fed_loss:
            raise ValueError("EQLv2OutputLayers replaces the classification loss: "
                             "MODEL.ROI_BOX_HEAD.USE_FED_LOSS must be False")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"MODEL.EQLV2.PRIOR_PROB must lie in (0, 1), got {prior_prob}")
        nn.init.constant_(self.cls_score.bias, -math.log((1 - prior_prob) / prior_prob))
        self.gamma, self.mu, self.alpha = gamma, mu, alpha
        self.test_with_obj = test_with_obj
        self.log_period = log_period
        # Persistent: resuming continues the statistics, and they are those of every rank.
        self.register_buffer("pos_grad", torch.zeros(self.num_classes))
        self.register_buffer("neg_grad", torch.zeros(self.num_classes))
        self.register_buffer("pos_neg", torch.full((self.num_classes,), INITIAL_GRADIENT_RATIO))

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        eqlv2 = cfg.MODEL.EQLV2
        ret.update({"gamma": eqlv2.GAMMA, "mu": eqlv2.MU, "alpha": eqlv2.ALPHA,
                    "test_with_obj": eqlv2.TEST_WITH_OBJ, "log_period": cfg.MODEL.ROI_BOX_HEAD.LOG_PERIOD,
                    "prior_prob": eqlv2.PRIOR_PROB})
        return ret

    def class_weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(q, r): the (C + 1,) positive and negative weights from the current g_j; 1 for background."""
        neg = 1 / (1 + torch.exp(-self.gamma * (self.pos_neg - self.mu)))
        neg = torch.cat([neg, neg.new_ones(1)])
        return 1 + self.alpha * (1 - neg), neg

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """"loss_cls" (EQLv2) and "loss_box_reg" (Fast R-CNN's); updates the gradient statistics."""
        scores, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = sampled_targets(proposals, proposal_deltas.device)
        pos_weight, neg_weight = self.class_weights()
        loss_cls, targets, weight = eqlv2_loss(scores, gt_classes, pos_weight, neg_weight)
        self._log(scores, gt_classes, neg_weight)
        self.collect_gradients(gradient_statistics(scores.detach(), targets, weight))
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    @torch.no_grad()
    def collect_gradients(self, statistics: torch.Tensor) -> None:
        """Add this step's (2, C) gradient sums, summed over all ranks, and update g_j."""
        # Contiguous: all_reduce of a strided view (the (2, C + 1) sums without background) is not
        # reduced correctly by gloo.
        statistics = statistics.to(self.pos_grad.dtype).contiguous()
        if comm.get_world_size() > 1:
            dist.all_reduce(statistics)
        self.pos_grad += statistics[0]
        self.neg_grad += statistics[1]
        self.pos_neg.copy_(self.pos_grad / (self.neg_grad + EPS))

    @torch.no_grad()
    def _log(self, scores, gt_classes, neg_weight) -> None:
        storage = get_event_storage()
        if storage.iter % self.log_period != 0:
            return
        _log_classification_stats(scores, gt_classes)
        storage.put_scalars(**{"eqlv2/neg_weight_mean": float(neg_weight[:-1].mean()),
                               "eqlv2/neg_weight_min": float(neg_weight[:-1].min())})

    def predict_probs(self, predictions, proposals: List[Instances]):
        """Per image (Ri, C + 1): sigmoid(z_j) (x (1 - sigmoid(z_bg)) with test_with_obj), then
        sigmoid(z_bg), the column inference drops."""
        scores, _ = predictions
        probs = torch.sigmoid(scores)
        class_probs, background = probs[:, :-1], probs[:, -1:]
        if self.test_with_obj:
            class_probs = class_probs * (1 - background)
        return torch.cat([class_probs, background], dim=1).split([len(p) for p in proposals], dim=0)

