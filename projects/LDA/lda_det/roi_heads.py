"""ROI heads whose box predictor is LDA's (fast_rcnn.LDAOutputLayers).

Only the box predictor differs: proposal sampling, the box head, box regression
and the mask head are those of the parent class. Select with
MODEL.ROI_HEADS.NAME: "LDAROIHeads" (FPN) or "LDARes5ROIHeads" (C4).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads

from .fast_rcnn import LDAOutputLayers


@ROI_HEADS_REGISTRY.register()
class LDAROIHeads(StandardROIHeads):
    """StandardROIHeads with LDA's box predictor."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LDAOutputLayers(cfg, ret["box_head"].output_shape)
        return ret


@ROI_HEADS_REGISTRY.register()
class LDARes5ROIHeads(Res5ROIHeads):
    """Res5ROIHeads (C4 backbones) with LDA's box predictor."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        # The res5 block's output channels, pooled to 1x1, feed the predictor.
        channels = ret["box_predictor"].bbox_pred.in_features
        ret["box_predictor"] = LDAOutputLayers(cfg, ShapeSpec(channels=channels, height=1, width=1))
        return ret
