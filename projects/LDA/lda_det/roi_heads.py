"""The ROI heads of lda_det: detectron2's, with the box predictor named by MODEL.ROI_BOX_HEAD.PREDICTOR.

Only the box predictor differs: proposal sampling, the box head, box regression and the mask head are
those of the parent class. Select with MODEL.ROI_HEADS.NAME: "PredictorROIHeads" (FPN) or
"PredictorRes5ROIHeads" (C4), and the predictor with MODEL.ROI_BOX_HEAD.PREDICTOR (lda_det.heads).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads

from .heads import build_box_predictor

__all__ = ["box_predictor_name", "PredictorROIHeads", "PredictorRes5ROIHeads", "LDAROIHeads", "LDARes5ROIHeads",
           "EQLROIHeads", "EQLv2ROIHeads", "SeesawROIHeads", "FederatedROIHeads"]


@ROI_HEADS_REGISTRY.register()
class PredictorROIHeads(StandardROIHeads):
    """StandardROIHeads (FPN backbones) with the configured box predictor."""

    predictor_name = None  # None: MODEL.ROI_BOX_HEAD.PREDICTOR; set by the named aliases below

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = build_box_predictor(cfg, ret["box_head"].output_shape, cls.predictor_name)
        return ret


@ROI_HEADS_REGISTRY.register()
class PredictorRes5ROIHeads(Res5ROIHeads):
    """Res5ROIHeads (C4 backbones) with the configured box predictor."""

    predictor_name = None  # None: MODEL.ROI_BOX_HEAD.PREDICTOR

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        # The res5 block's output channels, pooled to 1x1, feed the predictor.
        channels = ret["box_predictor"].bbox_pred.in_features
        pooled = ShapeSpec(channels=channels, height=1, width=1)
        ret["box_predictor"] = build_box_predictor(cfg, pooled, cls.predictor_name)
        return ret


def box_predictor_name(cfg):
    """The BOX_PREDICTOR_REGISTRY name of the predictor that cfg's ROI heads build; None for ROI heads not of
    this module (detectron2's StandardROIHeads, say), which ignore MODEL.ROI_BOX_HEAD.PREDICTOR."""
    heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
    if not issubclass(heads, (PredictorROIHeads, PredictorRes5ROIHeads)):
        return None
    return heads.predictor_name or cfg.MODEL.ROI_BOX_HEAD.PREDICTOR


def _fixed_predictor(name: str, heads: type, predictor: str) -> type:
    """ROI heads registered as ``name``: ``heads`` always building the box predictor ``predictor``."""
    fixed = type(name, (heads,), {"predictor_name": predictor, "__module__": __name__,
                                  "__doc__": f"{heads.__name__} with the box predictor {predictor}."})
    ROI_HEADS_REGISTRY.register(fixed)
    return fixed


# The ROI_HEADS.NAME values of the per-method heads, each one fixed predictor: configs and scripts that users
# already have name them, and lda_det.checkpoint's weights check tells heads apart by them.
LDAROIHeads = _fixed_predictor("LDAROIHeads", PredictorROIHeads, "LDAOutputLayers")
LDARes5ROIHeads = _fixed_predictor("LDARes5ROIHeads", PredictorRes5ROIHeads, "LDAOutputLayers")
EQLROIHeads = _fixed_predictor("EQLROIHeads", PredictorROIHeads, "EQLOutputLayers")
EQLv2ROIHeads = _fixed_predictor("EQLv2ROIHeads", PredictorROIHeads, "EQLv2OutputLayers")
SeesawROIHeads = _fixed_predictor("SeesawROIHeads", PredictorROIHeads, "SeesawOutputLayers")
FederatedROIHeads = _fixed_predictor("FederatedROIHeads", PredictorROIHeads, "FederatedOutputLayers")
