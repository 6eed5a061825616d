"""LDA (Long-tailed Distribution Adaptation, Peng et al., ACM MM 2021) for detectron2.

The ROI head replaces Fast R-CNN's (C+1)-way classifier by a fg/bg classifier and
LDA's unbalanced (h') and balanced (h) classifiers trained with lda_core.LDALoss.
Select it with MODEL.ROI_HEADS.NAME: "PredictorROIHeads" (FPN) or "PredictorRes5ROIHeads" (C4) and
MODEL.ROI_BOX_HEAD.PREDICTOR: "LDAOutputLayers" after add_lda_config(cfg).
"""
from .compat import restore_numpy_aliases
from .config import (add_decoupling_config, add_eql_config, add_eqlv2_config, add_evaluation_config,
                     add_federated_config, add_lda_config, add_seesaw_config)
from .decoupling import keeping_initialisation, restrict_trainable_parameters
# Importing heads registers the box predictors (MODEL.ROI_BOX_HEAD.PREDICTOR): LDAOutputLayers, SeesawOutputLayers
# (Seesaw Loss, Wang et al., CVPR 2021), EQLOutputLayers / EQLv2OutputLayers (Equalization Loss v1 / v2, Tan et
# al., CVPR 2020 / 2021), FederatedOutputLayers (detectron2's federated loss, CenterNet2's initialisation).
from .heads import (BOX_PREDICTOR_REGISTRY, EQLOutputLayers, EQLv2OutputLayers, FederatedOutputLayers,
                    LDAClassification, LDAOutputLayers, SeesawOutputLayers)
# Importing roi_heads registers PredictorROIHeads (FPN) / PredictorRes5ROIHeads (C4) in ROI_HEADS_REGISTRY, and
# the per-method names LDAROIHeads, LDARes5ROIHeads, EQLROIHeads, EQLv2ROIHeads, SeesawROIHeads, FederatedROIHeads.
from .roi_heads import (EQLROIHeads, EQLv2ROIHeads, FederatedROIHeads, LDAROIHeads, LDARes5ROIHeads,
                        PredictorROIHeads, PredictorRes5ROIHeads, SeesawROIHeads)
# DATALOADER.SAMPLER_TRAIN names beyond detectron2's (TRAIN_SAMPLER_REGISTRY, read by train_net.py).
from .samplers import TRAIN_SAMPLER_REGISTRY, ClassBalancedTrainingSampler

# Imported only for their side effects: register the demo backbone in BACKBONE_REGISTRY,
# and the datasets "synthetic_lt_train" / "synthetic_lt_val".
from . import backbone as _backbone  # noqa: F401  isort:skip
from . import data as _data  # noqa: F401  isort:skip

__all__ = ["add_lda_config", "add_decoupling_config", "add_evaluation_config", "add_eql_config", "add_eqlv2_config",
           "add_federated_config", "add_seesaw_config", "BOX_PREDICTOR_REGISTRY", "PredictorROIHeads", "PredictorRes5ROIHeads",
           "FederatedOutputLayers", "FederatedROIHeads",
           "restore_numpy_aliases", "LDAClassification", "LDAOutputLayers", "LDAROIHeads", "LDARes5ROIHeads",
           "SeesawOutputLayers", "SeesawROIHeads", "EQLOutputLayers", "EQLROIHeads", "EQLv2OutputLayers",
           "EQLv2ROIHeads", "ClassBalancedTrainingSampler", "TRAIN_SAMPLER_REGISTRY", "keeping_initialisation",
           "restrict_trainable_parameters"]
