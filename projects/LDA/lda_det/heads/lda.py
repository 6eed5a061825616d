"""LDAOutputLayers: the box predictor of LDA, replacing Fast R-CNN's (C+1)-way classifier.

Per region feature x (the box head's output):

* fg_bg_score:      foreground / background logits (column 0 = fg, 1 = bg), trained
                    with cross-entropy on all sampled proposals;
* unbalanced_score: h' over the C classes, \\  trained on positive proposals only,
* balanced_score:   h  over the C classes,  } through lda_core.LDALoss (Eq. 9);
* projection:       g(x), the features of the intra / inter terms (Eq. 7 / 8);
* bbox_pred:        Fast R-CNN's box regression, unchanged.

Inference scores class c by p(fg | x) * softmax(h(x))_c (or h' for the ablation),
then detectron2's per-class NMS (fast_rcnn_inference) as usual.
"""
import logging
import math
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cross_entropy, nonzero_tuple
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from lda_core import LDALoss

from ..class_counts import class_counts_for_model
from ..proposals import sampled_targets
from .registry import BOX_PREDICTOR_REGISTRY

logger = logging.getLogger(__name__)

SCORE_MODES = ("balanced", "unbalanced")
LOSS_NORMALIZATIONS = ("sampled", "positives")
FOREGROUND, BACKGROUND = 0, 1  # columns of the fg/bg logits


class LDAClassification(NamedTuple):
    """The classification half of the predictor's output (the other half: box deltas)."""

    fg_bg_logits: torch.Tensor  # (R, 2)
    unbalanced_logits: torch.Tensor  # (R, C), h'
    balanced_logits: torch.Tensor  # (R, C), h
    projection: Optional[torch.Tensor]  # (R, D), g(x); None at inference


@BOX_PREDICTOR_REGISTRY.register()
class LDAOutputLayers(FastRCNNOutputLayers):
    """Fast R-CNN output layers with LDA's fg/bg, h', h and projection heads.

    ``forward`` returns ``(LDAClassification, proposal_deltas)``, so detectron2's
    box-decoding methods of the parent class work unchanged.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, class_counts, gamma: float = 1.5, beta: float = 0.1,
                 margin: float = 1.0, window: int = 100, projection_dim: int = 128,
                 projection_hidden_dim: int = 0, unbalanced_loss_weight: float = 1.0,
                 balanced_loss_weight: float = 2.0, fg_bg_loss_weight: float = 1.0,
                 weighted_inter: bool = False, fixed_alpha: Optional[float] = None,
                 scaling: str = "official", loss_normalization: str = "sampled",
                 score_mode: str = "balanced", log_period: int = 20, batch_size_per_image: int = 512,
                 **kwargs):
        """
        Args:
            class_counts: n_y of the C training classes (Eq. 5), or None when unknown at build
                time (inference without the training data): a checkpoint's counts are then loaded
                into the ``class_counts`` buffer, and training without them raises.
            gamma, beta, margin, window, weighted_inter, fixed_alpha, scaling: see lda_core.LDALoss.
            projection_dim, projection_hidden_dim: the projection head g.
            unbalanced_loss_weight, balanced_loss_weight: LDALoss's factors of R_s(h'), alpha R_u(h).
            fg_bg_loss_weight: factor of the fg/bg cross-entropy.
            loss_normalization: "sampled" scales LDALoss's total by #positives / #sampled
                proposals (Fast R-CNN's weight of a positive); "positives" does not.
            score_mode: "balanced" scores with h, "unbalanced" with h'.
            log_period: iterations between the logs of alpha, delta acc and the loss terms.
            batch_size_per_image: proposals sampled per image (MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE);
                LDALoss gets this many rows per image, so that every DDP rank passes the same B.
            kwargs: FastRCNNOutputLayers' arguments.
        """
        super().__init__(input_shape, **kwargs)
        if self.use_sigmoid_ce or self.use_fed_loss:
            raise ValueError("LDAOutputLayers replaces the classification loss: "
                             "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE and USE_FED_LOSS must be False")
        if score_mode not in SCORE_MODES:
            raise ValueError(f"MODEL.LDA.SCORE_MODE must be one of {SCORE_MODES}, got {score_mode!r}")
        if loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"MODEL.LDA.LOSS_NORMALIZATION must be one of {LOSS_NORMALIZATIONS}, "
                             f"got {loss_normalization!r}")
        if class_counts is not None and len(class_counts) != self.num_classes:
            raise ValueError(f"{len(class_counts)} class counts for {self.num_classes} classes")
        input_size = self.bbox_pred.in_features
        # The (C+1)-way classifier is replaced by the three heads below.
        del self.cls_score
        self.fg_bg_score = nn.Linear(input_size, 2)
        self.unbalanced_score = nn.Linear(input_size, self.num_classes)
        self.balanced_score = nn.Linear(input_size, self.num_classes)
        for layer in (self.fg_bg_score, self.unbalanced_score, self.balanced_score):
            nn.init.normal_(layer.weight, std=0.01)  # as Fast R-CNN's cls_score
            nn.init.constant_(layer.bias, 0)
        if projection_hidden_dim > 0:
            self.projection = nn.Sequential(nn.Linear(input_size, projection_hidden_dim), nn.ReLU(inplace=True),
                                            nn.Linear(projection_hidden_dim, projection_dim))
        else:
            self.projection = nn.Linear(input_size, projection_dim)
        # n_y travel in the checkpoint (persistent buffer), so that inference needs no training
        # data; all zeros = not known yet (a model built for inference without DATASETS.TRAIN).
        self.register_buffer("class_counts", torch.as_tensor(
            [0] * self.num_classes if class_counts is None else class_counts, dtype=torch.int64))
        self._lda_loss_kwargs = dict(gamma=gamma, beta=beta, margin=margin, window=window,
                                     unbalanced_factor=unbalanced_loss_weight, balanced_factor=balanced_loss_weight,
                                     weighted_inter=weighted_inter, fixed_alpha=fixed_alpha, scaling=scaling)
        self.lda_loss = LDALoss(self.class_counts, **self._lda_loss_kwargs)
        self.class_counts_known = class_counts is not None
        self.fg_bg_loss_weight = fg_bg_loss_weight
        self.loss_normalization = loss_normalization
        self.score_mode = score_mode
        self.log_period = log_period
        self.batch_size_per_image = batch_size_per_image

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        lda = cfg.MODEL.LDA
        ret.update({
            "class_counts": class_counts_for_model(cfg),
            "gamma": lda.GAMMA,
            "beta": lda.BETA,
            "margin": lda.MARGIN,
            "window": lda.WINDOW,
            "projection_dim": lda.PROJECTION_DIM,
            "projection_hidden_dim": lda.PROJECTION_HIDDEN_DIM,
            "unbalanced_loss_weight": lda.UNBALANCED_LOSS_WEIGHT,
            "balanced_loss_weight": lda.BALANCED_LOSS_WEIGHT,
            "fg_bg_loss_weight": lda.FG_BG_LOSS_WEIGHT,
            "weighted_inter": lda.WEIGHTED_INTER,
            "fixed_alpha": lda.FIXED_ALPHA if lda.FIXED_ALPHA >= 0 else None,
            "scaling": lda.SCALING,
            "loss_normalization": lda.LOSS_NORMALIZATION,
            "score_mode": lda.SCORE_MODE,
            "log_period": cfg.MODEL.ROI_BOX_HEAD.LOG_PERIOD,
            "batch_size_per_image": cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        })
        return ret

    def forward(self, x):
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        classification = LDAClassification(
            fg_bg_logits=self.fg_bg_score(x),
            unbalanced_logits=self.unbalanced_score(x),
            balanced_logits=self.balanced_score(x),
            projection=self.projection(x) if self.training else None,
        )
        return classification, self.bbox_pred(x)

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """fg/bg cross-entropy on all proposals, LDALoss on the positives, box regression.

        Returns "loss_fg_bg", "loss_lda" (Eq. 9 on the positives, times #positives / #sampled
        with the default "sampled" normalization) and "loss_box_reg".
        """
        classification, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = sampled_targets(proposals, proposal_deltas.device)

        if not self.class_counts_known:
            raise RuntimeError("LDAOutputLayers has no class counts n_y to train with: the files of "
                               "DATASETS.TRAIN were not on disk when the model was built and no checkpoint "
                               "carrying them was loaded (see lda_det.class_counts)")
        # The LDA part uses the positives' mask, not their indices: the one nonzero (host sync) of a
        # step is that of detectron2's box_reg_loss.
        is_foreground = (gt_classes >= 0) & (gt_classes < self.num_classes)

        # Ignored proposals (label -1) get cross-entropy's ignore index.
        fg_bg_targets = torch.where(gt_classes >= 0, (~is_foreground).long(), torch.full_like(gt_classes, -100))
        loss_fg_bg = cross_entropy(classification.fg_bg_logits, fg_bg_targets, reduction="mean")
        lda = self.lda_loss(*self._lda_inputs(classification, gt_classes, is_foreground, len(proposals)))
        loss_lda = lda["loss"]
        if self.loss_normalization == "sampled":
            loss_lda = loss_lda * self._positive_fraction(is_foreground)
        loss_box_reg = self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes)
        self._log(classification, gt_classes, fg_bg_targets, is_foreground, lda)
        return {
            "loss_fg_bg": self.fg_bg_loss_weight * loss_fg_bg,
            "loss_lda": loss_lda,
            "loss_box_reg": self.loss_weight.get("loss_box_reg", 1.0) * loss_box_reg,
        }

    def _lda_inputs(self, classification, gt_classes, is_foreground, num_images: int):
        """LDALoss's arguments: ALL sampled proposals, ``valid`` = foreground, padded with invalid
        rows to batch_size_per_image x images. Under DDP the loss is one over the global batch
        (lda_core), which needs the same B on every rank while the positives differ per rank."""
        rows = self.batch_size_per_image * num_images
        padding = rows - gt_classes.numel()
        if padding < 0:
            raise ValueError(f"{gt_classes.numel()} proposals for {num_images} images exceed "
                             f"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE={self.batch_size_per_image} per image")

        def pad(tensor, value=0):
            if padding == 0:
                return tensor
            return F.pad(tensor, (0, 0, 0, padding) if tensor.dim() == 2 else (0, padding), value=value)
        targets = torch.where(is_foreground, gt_classes, torch.zeros_like(gt_classes))
        return (pad(classification.unbalanced_logits), pad(classification.balanced_logits), pad(targets),
                pad(classification.projection), pad(is_foreground, False))

    def _positive_fraction(self, is_foreground) -> torch.Tensor:
        """#positives / #sampled proposals of the global batch (all ranks), without a host sync.

        Eq. 9 times this gives a positive the weight it has in Fast R-CNN's cross-entropy (a mean
        over the sampled proposals): with "calibrated" scaling, R_s(h') x #pos / #sampled is
        exactly Fast R-CNN's mean CE over the global batch, and the balanced term keeps its
        coefficient relative to R_s(h') (see docs/loss.md, "Detection: the coefficient on LVIS").
        """
        counts = torch.stack([is_foreground.sum(), torch.tensor(is_foreground.numel(), device=is_foreground.device)])
        counts = counts.to(torch.float64)
        if comm.get_world_size() > 1:
            dist.all_reduce(counts)
        return (counts[0] / counts[1].clamp(min=1)).to(torch.float32)

    @torch.no_grad()
    def _log(self, classification, gt_classes, fg_bg_targets, is_foreground, lda) -> None:
        storage = get_event_storage()
        if storage.iter % self.log_period != 0:
            return
        fg_inds = nonzero_tuple(is_foreground)[0]
        positive_targets = gt_classes[fg_inds]
        num_labelled = (fg_bg_targets >= 0).sum().clamp(min=1)
        num_positives = positive_targets.numel()
        scalars = {
            "fg_bg_accuracy": (classification.fg_bg_logits.argmax(1) == fg_bg_targets).sum() / num_labelled,
            "alpha": lda["alpha"], "delta_acc": lda["delta_acc"],
            # Coefficient of the normalised balanced risk this step, alpha included (lda_core).
            "balanced_coefficient": lda["balanced_coefficient"],
            "loss_unbalanced": lda["loss_unbalanced"], "loss_balanced": lda["loss_balanced"],
            "loss_intra": lda["loss_intra"], "loss_inter": lda["loss_inter"],
        }
        if num_positives > 0:
            for name in ("unbalanced", "balanced"):
                logits = getattr(classification, f"{name}_logits")[fg_inds]
                scalars[f"{name}_accuracy"] = (logits.argmax(1) == positive_targets).float().mean()
        storage.put_scalars(**{f"lda/{k}": float(v) for k, v in scalars.items()})

    def predict_probs(self, predictions, proposals: List[Instances]):
        """Per image, (Ri, C + 1) scores: p(fg) * softmax(h)_c for c < C, p(bg) last."""
        classification, _ = predictions
        fg_bg_probs = F.softmax(classification.fg_bg_logits, dim=-1)
        class_logits = (classification.balanced_logits if self.score_mode == "balanced"
                        else classification.unbalanced_logits)
        class_probs = F.softmax(class_logits, dim=-1)
        probs = torch.cat([fg_bg_probs[:, FOREGROUND:FOREGROUND + 1] * class_probs,
                           fg_bg_probs[:, BACKGROUND:BACKGROUND + 1]], dim=1)
        return probs.split([len(p) for p in proposals], dim=0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + "cls_score.weight" in state_dict and prefix + "fg_bg_score.weight" not in state_dict:
            _convert_cls_score(state_dict, prefix, self.num_classes)
        counts_key = prefix + "class_counts"
        saved_counts = state_dict.get(counts_key)
        if saved_counts is not None and saved_counts.shape == self.class_counts.shape:
            self._take_checkpoint_counts(torch.as_tensor(saved_counts, dtype=torch.int64).cpu(), counts_key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if saved_counts is None and counts_key in missing_keys:
            # A checkpoint from before the counts were saved, or a plain Mask R-CNN: keep ours.
            missing_keys.remove(counts_key)
            logger.info(f"{counts_key} not in the checkpoint: n_y stay those of the config "
                        f"({'known' if self.class_counts_known else 'unknown: inference only'})")

    def _take_checkpoint_counts(self, saved_counts: torch.Tensor, key: str) -> None:
        """A checkpoint's n_y win over the recomputed ones: LDALoss is rebuilt on them.

        Called while loading, before the children: the rebuilt LDALoss then loads its
        accuracy window from the same state dict.
        """
        if not saved_counts.any():
            return  # saved by a model that did not know its counts either
        if torch.equal(saved_counts, self.class_counts.cpu()):
            self.class_counts_known = True
            return
        if self.class_counts_known:
            logger.warning(f"{key}: the checkpoint's class counts differ from those of the config "
                           f"(total {int(saved_counts.sum())} vs {int(self.class_counts.sum())}); "
                           f"using the checkpoint's")
        device = self.class_counts.device
        self.class_counts = saved_counts.to(device)
        self.lda_loss = LDALoss(saved_counts, **self._lda_loss_kwargs).to(device)
        self.class_counts_known = True


def _convert_cls_score(state_dict, prefix: str, num_classes: int) -> None:
    """Initialise fg/bg, h' and h from a plain Fast R-CNN (C+1)-way classifier, in place.

    With logits z_c = w_c x + b_c (c < C) and z_bg = w_bg x + b_bg, the plain model has
    p(fg) / p(bg) = exp(logsumexp_c z_c - z_bg) and p(c | fg) = softmax_c(z_c). So:

    * h' and h get the C foreground rows: their softmax is exactly p(c | fg);
    * the background logit gets the bg row;
    * the foreground logit should be logsumexp_c(w_c x + b_c), which is not linear in x;
      it gets its first-order expansion at x = 0: weight sum_c softmax(b)_c w_c and bias
      logsumexp(b). p(fg) then equals the plain model's exactly at x = 0, with the same
      gradient there; fine-tuning corrects the rest.
    """
    weight = state_dict.pop(prefix + "cls_score.weight")
    bias = state_dict.pop(prefix + "cls_score.bias")
    weight, bias = torch.as_tensor(weight), torch.as_tensor(bias)
    if weight.shape[0] != num_classes + 1:
        raise ValueError(f"{prefix}cls_score.weight has {weight.shape[0]} rows; the LDA head has "
                         f"{num_classes} classes and expects {num_classes + 1} (C classes + background)")
    fg_weight, fg_bias = weight[:num_classes], bias[:num_classes]
    bias_softmax = torch.softmax(fg_bias.double(), dim=0).to(weight.dtype)
    state_dict[prefix + "fg_bg_score.weight"] = torch.stack([bias_softmax @ fg_weight, weight[num_classes]])
    state_dict[prefix + "fg_bg_score.bias"] = torch.stack(
        [torch.logsumexp(fg_bias.double(), dim=0).to(bias.dtype), bias[num_classes]])
    for head in ("unbalanced_score", "balanced_score"):
        state_dict[prefix + head + ".weight"] = fg_weight.clone()
        state_dict[prefix + head + ".bias"] = fg_bias.clone()
    logger.info(f"Converted a (C+1)-way classifier {prefix}cls_score ({num_classes} classes + background) "
                f"into the LDA head: rows 0..{num_classes - 1} -> {prefix}unbalanced_score (h') and "
                f"{prefix}balanced_score (h); row {num_classes} (background) -> {prefix}fg_bg_score row 1; "
                f"fg_bg_score row 0 <- first-order logsumexp of the foreground rows (bias logsumexp(b) = "
                f"{math.log(float(torch.exp(fg_bias.double()).sum())):.3f}). Projection head and LDA "
                f"accuracy window start fresh.")
