"""LDA (Long-tailed Distribution Adaptation, Peng et al., ACM MM 2021) for detectron2.

The ROI head replaces Fast R-CNN's (C+1)-way classifier by a fg/bg classifier and
LDA's unbalanced (h') and balanced (h) classifiers trained with lda_core.LDALoss.
Select it with MODEL.ROI_HEADS.NAME: "LDAROIHeads" after add_lda_config(cfg).
"""
from .compat import restore_numpy_aliases
from .config import add_eql_config, add_eqlv2_config, add_lda_config
from .fast_rcnn import LDAClassification, LDAOutputLayers
# Importing roi_heads registers LDAROIHeads / LDARes5ROIHeads in ROI_HEADS_REGISTRY.
from .roi_heads import LDAROIHeads, LDARes5ROIHeads
# Importing eql / eqlv2 registers EQLROIHeads / EQLv2ROIHeads (Equalization Loss v1 / v2 baselines).
from .eql import EQLOutputLayers, EQLROIHeads
from .eqlv2 import EQLv2OutputLayers, EQLv2ROIHeads

# Imported only for their side effects: register the demo backbone in BACKBONE_REGISTRY,
# and the datasets "synthetic_lt_train" / "synthetic_lt_val".
from . import backbone as _backbone  # noqa: F401  isort:skip
from . import data as _data  # noqa: F401  isort:skip

__all__ = ["add_lda_config", "add_eql_config", "add_eqlv2_config", "restore_numpy_aliases", "LDAClassification",
           "LDAOutputLayers", "LDAROIHeads", "LDARes5ROIHeads", "EQLOutputLayers", "EQLROIHeads",
           "EQLv2OutputLayers", "EQLv2ROIHeads"]
