"""The federated loss (Zhou et al., "Probabilistic two-stage detection", 2021) with its authors' initialisation.

The loss is detectron2's own: FastRCNNOutputLayers with MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE and USE_FED_LOSS
(ported from CenterNet2's fed_loss.py): per-class sigmoid cross-entropy over the classes of the batch's
ground truth plus negatives drawn ~ image_count^FED_LOSS_FREQ_WEIGHT_POWER, summed and divided by the
number of sampled proposals. This head changes the initialisation only. Detectron2 starts the classifier's
bias at 0, i.e. every one of the C sigmoid columns at p = 0.5; the authors' CenterNet2
(projects/CenterNet2/centernet/modeling/roi_heads/custom_fast_rcnn.py, CustomFastRCNNOutputLayers.__init__)
sets it to -log((1 - pi) / pi) with pi = MODEL.ROI_BOX_HEAD.PRIOR_PROB = 0.01 (centernet/config.py) whenever
USE_SIGMOID_CE, on all C + 1 columns. The weight, N(0, 0.01^2), and the box regression, N(0, 0.001^2) with
bias 0, are detectron2's in both.

Select with MODEL.ROI_HEADS.NAME: "FederatedROIHeads" (configs/LVIS-LDA/federated_mask_rcnn_R_50_FPN_1x.yaml).
"""
import math

from torch import nn

from detectron2.config import configurable
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from .registry import BOX_PREDICTOR_REGISTRY

__all__ = ["FederatedOutputLayers", "prior_bias"]


def prior_bias(prior_prob: float) -> float:
    """-log((1 - pi) / pi): the logit at which a sigmoid column starts at probability pi."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"MODEL.FEDERATED.PRIOR_PROB must lie in (0, 1), got {prior_prob}")
    return -math.log((1 - prior_prob) / prior_prob)


@BOX_PREDICTOR_REGISTRY.register()
class FederatedOutputLayers(FastRCNNOutputLayers):
    """detectron2's sigmoid / federated FastRCNNOutputLayers, classifier bias at CenterNet2's prior."""

    @configurable
    def __init__(self, input_shape, *, prior_prob: float = 0.01, **kwargs):
        """
        Args:
            prior_prob: initial probability pi of every sigmoid column (bias -log((1 - pi) / pi)).
            kwargs: FastRCNNOutputLayers' arguments; use_sigmoid_ce and use_fed_loss must be True.
        """
        super().__init__(input_shape, **kwargs)
        if not (self.use_sigmoid_ce and self.use_fed_loss):
            raise ValueError("FederatedROIHeads is the federated loss: MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE and "
                             "USE_FED_LOSS must be True")
        nn.init.constant_(self.cls_score.bias, prior_bias(prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["prior_prob"] = cfg.MODEL.FEDERATED.PRIOR_PROB
        return ret

