"""Box predictors by name (BOX_PREDICTOR_REGISTRY), one module per method; lda_det.roi_heads builds the one
named by MODEL.ROI_BOX_HEAD.PREDICTOR on FPN (StandardROIHeads) and C4 (Res5ROIHeads) backbones."""
from .registry import BOX_PREDICTOR_REGISTRY, build_box_predictor
# Importing each module registers its predictor in BOX_PREDICTOR_REGISTRY.
from .lda import LDAClassification, LDAOutputLayers
from .eql import EQLOutputLayers
from .eqlv2 import EQLv2OutputLayers
from .seesaw import SeesawOutputLayers
from .federated import FederatedOutputLayers

__all__ = ["BOX_PREDICTOR_REGISTRY", "build_box_predictor", "LDAClassification", "LDAOutputLayers",
           "EQLOutputLayers", "EQLv2OutputLayers", "SeesawOutputLayers", "FederatedOutputLayers"]
