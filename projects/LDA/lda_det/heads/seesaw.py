"""Seesaw Loss (Wang et al., CVPR 2021, "Seesaw Loss for Long-Tailed Instance Segmentation").

The box predictor's classifier has C + 2 outputs, as in mmdetection's SeesawLoss
(mmdet/models/losses/seesaw_loss.py, ``get_cls_channels``): C class logits z and a 2-way
objectness branch (column C = foreground, C + 1 = background).

Training (per sampled proposal):

* objectness: 2-way cross-entropy on every sampled proposal (fg vs bg);
* classes: on foreground proposals only, softmax cross-entropy over the C classes with the
  logits of the negative classes j != i (i = ground truth) shifted by log S_ij, i.e.
  sigma_hat_i = exp(z_i) / (exp(z_i) + sum_{j != i} S_ij exp(z_j)), with S_ij = M_ij * C_ij:

  - mitigation  M_ij = (N_j / N_i)^p if N_j < N_i else 1, N = cumulative number of foreground
    proposals of each class seen so far (counted online, this step's included, as mmdet does);
  - compensation C_ij = (sigma_j / sigma_i)^q if sigma_j > sigma_i else 1, sigma = softmax(z),
    detached, sigma_i clamped below at eps.

Inference: score_c = softmax(z)_c * p(fg), background = p(bg) = 1 - p(fg) (mmdet's
``SeesawLoss.get_activation``), in detectron2's (C + 1)-column predict_probs convention, so the
parent's inference() (per-class NMS, Instances) is unchanged.

Initialisation as mmdetection's seesaw bbox head: the (C + 2)-way NormedLinear (objectness columns in the
same layer) N(0, 0.01^2) with bias 0 (mmdet normed_predictor.py NormedLinear.init_weights and BBoxHead's
init_cfg for fc_cls), box regression N(0, 0.001^2) with bias 0 (BBoxHead's init_cfg for fc_reg; detectron2's).

Select with MODEL.ROI_HEADS.NAME: "SeesawROIHeads" after add_lda_config(cfg) (MODEL.SEESAW.*).
"""
import logging
from typing import Dict, List

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..proposals import sampled_targets
from .registry import BOX_PREDICTOR_REGISTRY

logger = logging.getLogger(__name__)

IGNORE = -100  # cross-entropy's ignore index, for proposals labelled -1 (ignored by the matcher)


class NormedLinear(nn.Linear):
    """Cosine classifier: tau * <x / |x|, w_k / |w_k|> + b_k (mmdet's NormedLinear, power 1).

    The seesaw configs of mmdetection build the classifier with it (``cls_predictor_cfg=dict(
    type='NormedLinear', tempearture=20)``); the bias is kept, as there.
    """

    def __init__(self, in_features: int, out_features: int, temperature: float = 20.0, eps: float = 1e-6):
        super().__init__(in_features, out_features)
        self.temperature = temperature
        self.eps = eps  # keeps the division finite for an all-zero feature or weight row

    def forward(self, x):
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True) + self.eps)
        return F.linear(self.temperature * x, weight, self.bias)


def seesaw_log_factors(class_logits: torch.Tensor, targets: torch.Tensor, class_counts: torch.Tensor,
                       p: float, q: float, eps: float):
    """(log M, log C): the logs of the mitigation and compensation factors, each (R, C).

    Row r holds the factors of its ground-truth class i = targets[r] against every class j;
    column i itself is 1 (log 0) in both. Computed in logs (p log ratio, q log ratio) rather
    than as powers, which is the same value without underflow for large count ratios.

    Args:
        class_logits: (R, C) logits z of the C classes.
        targets: (R,) ground-truth class i in [0, C) of each row.
        class_counts: (C,) cumulative counts N (any dtype); counts below 1 count as 1, as in mmdet,
            so that an unseen class gets no infinite ratio.
        p, q: exponents of the mitigation and compensation factors.
        eps: lower bound on sigma_i in sigma_j / sigma_i.
    """
    # At least float32: under autocast the logits may be float16, where counts above 65504 are inf.
    dtype = torch.promote_types(class_logits.dtype, torch.float32)
    class_logits = class_logits.to(dtype)
    counts = class_counts.to(dtype).clamp(min=1)
    # N_j / N_i, capped at 1: M_ij = 1 wherever N_j >= N_i.
    count_ratio = (counts[None, :] / counts[targets][:, None]).clamp(max=1)
    log_mitigation = p * count_ratio.log()
    probs = F.softmax(class_logits.detach(), dim=1)  # sigma, no gradient through the factors
    own_prob = probs.gather(1, targets[:, None]).clamp(min=eps)
    # sigma_j / sigma_i, floored at 1: C_ij = 1 wherever sigma_j <= sigma_i.
    prob_ratio = (probs / own_prob).clamp(min=1)
    log_compensation = q * prob_ratio.log()
    return log_mitigation, log_compensation


def seesaw_cross_entropy(class_logits: torch.Tensor, targets: torch.Tensor, class_counts: torch.Tensor,
                         p: float = 0.8, q: float = 2.0, eps: float = 1e-2) -> torch.Tensor:
    """Per-row seesaw loss -log sigma_hat_i, (R,): cross-entropy on z_j + log S_ij for j != i."""
    class_logits = class_logits.to(torch.promote_types(class_logits.dtype, torch.float32))
    log_mitigation, log_compensation = seesaw_log_factors(class_logits, targets, class_counts, p, q, eps)
    is_negative = targets[:, None] != torch.arange(class_logits.shape[1], device=targets.device)[None, :]
    adjusted = class_logits + (log_mitigation + log_compensation) * is_negative
    return F.cross_entropy(adjusted, targets, reduction="none")


@BOX_PREDICTOR_REGISTRY.register()
class SeesawOutputLayers(FastRCNNOutputLayers):
    """Fast R-CNN output layers with a (C + 2)-way classifier trained with Seesaw Loss.

    ``forward`` is the parent's: ``(scores, proposal_deltas)`` with scores (R, C + 2) =
    [C class logits, fg logit, bg logit].
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, p: float = 0.8, q: float = 2.0, eps: float = 1e-2,
                 seesaw_loss_weight: float = 1.0, cosine_classifier: bool = True, temperature: float = 20.0,
                 log_period: int = 20, **kwargs):
        """
        Args:
            p, q, eps: exponents of the mitigation / compensation factors and the floor on sigma_i.
            seesaw_loss_weight: factor on both classification terms (mmdet's loss_weight applies to both).
            cosine_classifier: the (C + 2)-way classifier is a NormedLinear with ``temperature``
                (mmdet's seesaw configs) instead of a plain Linear.
            log_period: iterations between logs of the accuracies (a host sync each time).
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        if self.use_sigmoid_ce or self.use_fed_loss:
            raise ValueError("SeesawOutputLayers replaces the classification loss: "
                             "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE and USE_FED_LOSS must be False")
        input_size = self.cls_score.in_features
        # C classes + 2 objectness logits instead of Fast R-CNN's C + 1.
        if cosine_classifier:
            self.cls_score = NormedLinear(input_size, self.num_classes + 2, temperature=temperature)
        else:
            self.cls_score = nn.Linear(input_size, self.num_classes + 2)
        nn.init.normal_(self.cls_score.weight, std=0.01)  # as Fast R-CNN's (and mmdet's NormedLinear)
        nn.init.constant_(self.cls_score.bias, 0)
        # N_j: foreground proposals of each class seen so far, over all ranks. int64, so it stays exact
        # (float32 stops counting by ones past 2^24, which LVIS's frequent classes pass in a 1x
        # schedule) and a model.half() / .double() leaves it alone. Persistent: it travels in checkpoints,
        # so that a resumed run continues with the same factors.
        self.register_buffer("class_counts", torch.zeros(self.num_classes, dtype=torch.int64))
        self.p, self.q, self.eps = p, q, eps
        self.seesaw_loss_weight = seesaw_loss_weight
        self.log_period = log_period

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        seesaw = cfg.MODEL.SEESAW
        ret.update({
            "p": seesaw.P,
            "q": seesaw.Q,
            "eps": seesaw.EPS,
            "seesaw_loss_weight": seesaw.LOSS_WEIGHT,
            "cosine_classifier": seesaw.COSINE_CLASSIFIER,
            "temperature": seesaw.TEMPERATURE,
            "log_period": cfg.MODEL.ROI_BOX_HEAD.LOG_PERIOD,
        })
        return ret

    def split_scores(self, scores: torch.Tensor):
        """(class logits (R, C), objectness logits (R, 2): column 0 = fg, 1 = bg)."""
        return scores[:, :self.num_classes], scores[:, self.num_classes:]

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """"loss_cls_classes" (seesaw, foreground only), "loss_cls_objectness", "loss_box_reg".

        Normalisation as mmdet's BBoxHead.loss: both classification terms are sums divided by the
        number of sampled (labelled) proposals, avg_factor = #(label_weights > 0), so the class
        term is NOT a mean over the positives (and the box term too: mmdet's avg_factor is
        bbox_targets.size(0), detectron2's the number of sampled proposals, the same number).
        Here that number is taken over all ranks and divided by the world size (what each rank has
        when ranks sample alike): DDP's mean of the ranks' gradients is then exactly one process's
        on the global batch.
        """
        scores, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = sampled_targets(proposals, proposal_deltas.device)

        class_logits, objectness_logits = self.split_scores(scores)
        is_labelled = gt_classes >= 0
        is_foreground = is_labelled & (gt_classes < self.num_classes)
        num_labelled = self.update_class_counts(gt_classes, is_foreground)

        # Every row goes through the seesaw CE (no data-dependent indexing, hence no host sync);
        # the background rows get a valid dummy target and are zeroed by the mask.
        targets = torch.where(is_foreground, gt_classes, torch.zeros_like(gt_classes))
        per_row = seesaw_cross_entropy(class_logits, targets, self.class_counts, self.p, self.q, self.eps)
        loss_classes = (per_row * is_foreground).sum() / num_labelled
        objectness_targets = torch.where(is_labelled, (~is_foreground).long(), torch.full_like(gt_classes, IGNORE))
        loss_objectness = F.cross_entropy(objectness_logits, objectness_targets, reduction="sum",
                                          ignore_index=IGNORE) / num_labelled
        # detectron2's box regression (its nonzero over the positives is its one host sync), a sum over
        # the positives / this rank's #proposals: brought to the same normaliser as the classification.
        loss_box_reg = self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes)
        loss_box_reg = loss_box_reg * max(gt_classes.numel(), 1) / num_labelled
        self._log(class_logits, objectness_logits, gt_classes, objectness_targets, is_foreground)
        return {
            "loss_cls_classes": self.seesaw_loss_weight * loss_classes,
            "loss_cls_objectness": self.seesaw_loss_weight * loss_objectness,
            "loss_box_reg": self.loss_weight.get("loss_box_reg", 1.0) * loss_box_reg,
        }

    @torch.no_grad()
    def update_class_counts(self, gt_classes: torch.Tensor, is_foreground: torch.Tensor) -> torch.Tensor:
        """Add this step's foreground proposals of every rank to N; return the loss normaliser.

        One all_reduce carries both the per-class counts and the number of labelled proposals, so
        that every rank holds the counts one process would on the global batch. No host sync:
        scatter_add instead of bincount (which reads the max on the host on CUDA).
        """
        step = torch.zeros(self.num_classes + 1, dtype=torch.int64, device=self.class_counts.device)
        index = torch.where(is_foreground, gt_classes, torch.zeros_like(gt_classes)).to(step.device)
        step.scatter_add_(0, index, is_foreground.to(step))
        step[self.num_classes] = (gt_classes >= 0).sum()
        world_size = comm.get_world_size()
        if world_size > 1:
            dist.all_reduce(step)
        self.class_counts += step[:self.num_classes]
        # mmdet's avg_factor = max(#labelled, 1); per rank, the global number / world size.
        return (step[self.num_classes].to(torch.float32) / world_size).clamp(min=1.0)

    @torch.no_grad()
    def _log(self, class_logits, objectness_logits, gt_classes, objectness_targets, is_foreground) -> None:
        storage = get_event_storage()
        if self.log_period <= 0 or storage.iter % self.log_period != 0:
            return
        labelled = objectness_targets != IGNORE
        scalars = {"objectness_accuracy": (objectness_logits.argmax(1) == objectness_targets)[labelled].float().mean()}
        if is_foreground.any():
            predicted = class_logits[is_foreground].argmax(1)
            scalars["class_accuracy"] = (predicted == gt_classes[is_foreground]).float().mean()
        scalars["seen_classes"] = (self.class_counts > 0).sum()
        storage.put_scalars(**{f"seesaw/{k}": float(v) for k, v in scalars.items()})

    def predict_probs(self, predictions, proposals: List[Instances]):
        """Per image, (Ri, C + 1) scores: softmax(z)_c * p(fg) for c < C, p(bg) last."""
        scores, _ = predictions
        class_logits, objectness_logits = self.split_scores(scores)
        objectness = F.softmax(objectness_logits, dim=-1)
        probs = torch.cat([F.softmax(class_logits, dim=-1) * objectness[:, :1], objectness[:, 1:]], dim=1)
        return probs.split([len(p) for p in proposals], dim=0)

