"""LDA (Long-tailed Distribution Adaptation, Peng et al., ACM MM 2021) for detectron2.

The ROI head replaces Fast R-CNN's (C+1)-way classifier by a fg/bg classifier and
LDA's unbalanced (h') and balanced (h) classifiers trained with lda_core.LDALoss.
Select it with MODEL.ROI_HEADS.NAME: "LDAROIHeads" after add_lda_config(cfg).
"""
from .compat import restore_numpy_aliases
from .config import (add_decoupling_config, add_eql_config, add_eqlv2_config, add_evaluation_config,
                     add_federated_config, add_lda_config, add_seesaw_config)
from .decoupling import keeping_initialisation, restrict_trainable_parameters
from .fast_rcnn import LDAClassification, LDAOutputLayers
# Importing roi_heads registers LDAROIHeads / LDARes5ROIHeads in ROI_HEADS_REGISTRY.
from .roi_heads import LDAROIHeads, LDARes5ROIHeads
# DATALOADER.SAMPLER_TRAIN names beyond detectron2's (TRAIN_SAMPLER_REGISTRY, read by train_net.py).
from .samplers import TRAIN_SAMPLER_REGISTRY, ClassBalancedTrainingSampler
# Importing these registers the compared heads: SeesawROIHeads (Seesaw Loss, Wang et al., CVPR 2021),
# EQLROIHeads / EQLv2ROIHeads (Equalization Loss v1 / v2, Tan et al., CVPR 2020 / 2021), FederatedROIHeads
# (detectron2's federated loss, CenterNet2's initialisation).
from .seesaw import SeesawOutputLayers, SeesawROIHeads
from .eql import EQLOutputLayers, EQLROIHeads
from .eqlv2 import EQLv2OutputLayers, EQLv2ROIHeads
from .federated import FederatedOutputLayers, FederatedROIHeads

# Imported only for their side effects: register the demo backbone in BACKBONE_REGISTRY,
# and the datasets "synthetic_lt_train" / "synthetic_lt_val".
from . import backbone as _backbone  # noqa: F401  isort:skip
from . import data as _data  # noqa: F401  isort:skip

__all__ = ["add_lda_config", "add_decoupling_config", "add_evaluation_config", "add_eql_config", "add_eqlv2_config",
           "add_federated_config", "add_seesaw_config", "FederatedOutputLayers", "FederatedROIHeads",
           "restore_numpy_aliases", "LDAClassification", "LDAOutputLayers", "LDAROIHeads", "LDARes5ROIHeads",
           "SeesawOutputLayers", "SeesawROIHeads", "EQLOutputLayers", "EQLROIHeads", "EQLv2OutputLayers",
           "EQLv2ROIHeads", "ClassBalancedTrainingSampler", "TRAIN_SAMPLER_REGISTRY", "keeping_initialisation",
           "restrict_trainable_parameters"]
