"""Decoupling representation and classifier (Kang et al. 2020): two-stage methods on a stage-1 run.

Stage 2 is "load stage-1 weights, freeze what the method says, re-initialise or re-scale the
classifier, run the same trainer" (``TwoStageMethod.prepare``); the stage-1 checkpoint is
``--weights`` (DECOUPLE.STAGE1_WEIGHTS), e.g. a CE run's model_best.pth.

* cRT: backbone frozen, h re-initialised and re-trained with class-balanced sampling
  (configs/cls/methods/crt.yaml).
* LWS: backbone and h's weights frozen; the per-class scales f_y train, class-balanced sampling.
* tau-norm: nothing trains; w_y / ||w_y||^tau with tau chosen on the VALIDATION split
  (lda_cls/methods/validation.py), never on test; a dataset without one fails unless
  DECOUPLE.TAU_GRID holds a single, fixed tau.
* NCM: nothing trains; nearest class mean of the centred, L2-normalised training features (Kang et al.'s
  models/KNNClassifier.py "cl2n", run_networks.py ``get_knncentroids``).

Against Kang et al.'s code (facebookresearch/classifier-balancing): the losses, the classifiers and cRT's
re-initialisation (a fresh nn.Linear: their load_model skips DotProductClassifier's weights) are theirs,
and so is the frozen backbone's BatchNorm mode in stage 2 (cRT, LWS): their run_networks.py ``train`` puts
every network in training mode, so the BatchNorms normalise with batch statistics and re-estimate their
running statistics under class-balanced sampling (DECOUPLE.BACKBONE_BN "train", the default; "eval" keeps
stage 1's, ``FrozenInEval``). One difference: their tau_norm.py scans tau in linspace(0, 2, 21) and prints
the accuracy of every tau on the split it is given; here tau is chosen on the validation split from
DECOUPLE.TAU_GRID ([0, 1] in steps of 0.1 by default).
"""
import json
import os
from typing import List

import torch
from torch import nn

from lda_common.checkpoint_io import load_checkpoint

from ..hooks.base import HookBase
from ..utils import all_reduce_sum, is_main_process
from .base import Method, register_method
from .ce import CrossEntropyLoss
from .validation import validation_set

__all__ = ["TwoStageMethod", "ClassifierRetraining", "LearnableWeightScaling", "TauNormalization",
           "NearestClassMean", "load_stage1_weights", "normalized_feature_sums",
           "training_feature_mean"]


def load_stage1_weights(model, path: str, keep_classifier: bool) -> List[str]:
    """Load the backbone (and, if ``keep_classifier``, h's weight / bias) of a stage-1 checkpoint."""
    if not path:
        raise ValueError("a two-stage method needs the stage-1 checkpoint: --weights output/<run>/model_best.pth "
                         "(DECOUPLE.STAGE1_WEIGHTS)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"stage-1 weights not found: {path}")
    state = load_checkpoint(path)  # weights_only: a stage-1 file from elsewhere runs nothing
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    wanted = [key for key in own if key.startswith("backbone.")]
    if keep_classifier:
        wanted += [key for key in ("head.balanced.weight", "head.balanced.bias") if key in own]
    missing = [key for key in wanted if key not in state]
    if missing:
        raise ValueError(f"stage-1 checkpoint {path} lacks {len(missing)} keys the model needs, "
                         f"e.g. {missing[:3]} (a checkpoint of another backbone?)")
    misshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}" for key in wanted
                 if state[key].shape != own[key].shape]
    if misshaped:
        raise ValueError(f"stage-1 checkpoint {path} does not fit the model: {misshaped[:3]}")
    model.load_state_dict({key: state[key] for key in wanted}, strict=False)
    return wanted


BACKBONE_BN_MODES = ("train", "eval")


class FrozenInEval(HookBase):
    """Hook (DECOUPLE.BACKBONE_BN "eval"): the frozen backbone stays in eval mode, so its BatchNorm
    statistics stay stage-1's. Kang et al.'s stage 2 runs it in training mode (module docstring)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def before_epoch(self, epoch: int) -> None:
        self.module.eval()


class TwoStageMethod(Method):
    """Base of the stage-2 methods. Subclasses set ``classifier`` (the MODEL.CLASSIFIER they need, or one of
    ``classifier_variants``), ``keep_classifier`` (load stage-1's h), ``trains`` and ``frozen_classifier_params``."""

    classifier = "linear"
    classifier_variants = ()
    keep_classifier = True
    trains = True
    frozen_classifier_params = ()  # names in h that stay frozen in stage 2 (LWS: "weight", "bias")

    def build_criterion(self) -> nn.Module:
        return CrossEntropyLoss(self.num_classes)

    def prepare(self, context) -> None:
        cfg = self.cfg
        if cfg.MODEL.CLASSIFIER not in (self.classifier,) + tuple(self.classifier_variants):
            raise ValueError(f"METHOD {cfg.METHOD} needs MODEL.CLASSIFIER {self.classifier!r} "
                             f"(configs/cls/methods/{cfg.METHOD}.yaml), got {cfg.MODEL.CLASSIFIER!r}")
        if self.trains == (cfg.SOLVER.EPOCHS == 0):
            raise ValueError(f"METHOD {cfg.METHOD} {'trains h' if self.trains else 'trains nothing'}: "
                             f"SOLVER.EPOCHS must be {'> 0' if self.trains else '0'}, got {cfg.SOLVER.EPOCHS}")
        if cfg.DECOUPLE.BACKBONE_BN not in BACKBONE_BN_MODES:
            raise ValueError(f"DECOUPLE.BACKBONE_BN must be one of {BACKBONE_BN_MODES}, got {cfg.DECOUPLE.BACKBONE_BN!r}")
        model = context.model
        load_stage1_weights(model, cfg.DECOUPLE.STAGE1_WEIGHTS, self.keep_classifier)
        context.logger.info(f"{cfg.METHOD}: stage-1 weights from {cfg.DECOUPLE.STAGE1_WEIGHTS}")
        for parameter in model.backbone.parameters():
            parameter.requires_grad_(False)
        for name, parameter in model.head.balanced.named_parameters():
            if name in self.frozen_classifier_params:
                parameter.requires_grad_(False)
        self.setup_classifier(context)

    def setup_classifier(self, context) -> None:
        pass

    def hooks(self, context) -> List[HookBase]:
        return [FrozenInEval(context.model.backbone)] if self.cfg.DECOUPLE.BACKBONE_BN == "eval" else []


@register_method("crt")
class ClassifierRetraining(TwoStageMethod):
    keep_classifier = False

    def setup_classifier(self, context) -> None:
        context.model.head.balanced.reset_parameters()


@register_method("lws")
class LearnableWeightScaling(TwoStageMethod):
    classifier = "lws"
    frozen_classifier_params = ("weight", "bias")


@register_method("tau_norm")
class TauNormalization(TwoStageMethod):
    classifier = "tau_norm"
    trains = False

    def setup_classifier(self, context) -> None:
        grid = [float(tau) for tau in self.cfg.DECOUPLE.TAU_GRID]
        if not grid:
            raise ValueError("DECOUPLE.TAU_GRID is empty")
        classifier = context.model.head.balanced
        if len(grid) == 1:  # a fixed tau: nothing to choose, no validation split needed
            classifier.tau.fill_(grid[0])
            context.logger.info(f"tau-norm: tau fixed at {grid[0]} (DECOUPLE.TAU_GRID has one value)")
            return
        dataset, source = validation_set(self.cfg, context)
        outputs = context.forward_over(dataset, keys=("features",))  # no (N, C) logits kept
        features, targets = outputs["features"], outputs["targets"]
        # One (taus, C) table of correct counts per class, summed over ranks: mean per-class accuracy.
        correct = torch.zeros(len(grid), self.num_classes, dtype=torch.float64, device=features.device)
        totals = torch.zeros(self.num_classes, dtype=torch.float64, device=features.device)
        totals.index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
        with torch.no_grad():
            for index, tau in enumerate(grid):
                predictions = (features @ classifier.effective_weight(tau).t()).argmax(1)
                correct[index].index_add_(0, targets, (predictions == targets).double())
        all_reduce_sum(correct)
        all_reduce_sum(totals)
        accuracy = (100.0 * correct / totals.clamp(min=1)).mean(dim=1).tolist()
        best = max(range(len(grid)), key=lambda i: (accuracy[i], -i))  # ties: the smallest tau
        classifier.tau.fill_(grid[best])
        record = {"tau": grid[best], "validation": source, "grid": grid, "val_mean_class_accuracy": accuracy}
        context.logger.info(f"tau-norm: tau {grid[best]} chosen on {source}: {accuracy}")
        if context.output_dir and is_main_process():
            with open(os.path.join(context.output_dir, "tau_search.json"), "w") as handle:
                json.dump(record, handle, indent=2)


@register_method("ncm")
class NearestClassMean(TwoStageMethod):
    classifier = "ncm"
    classifier_variants = ("ncm_euclidean",)
    keep_classifier = False
    trains = False

    def setup_classifier(self, context) -> None:
        outputs = context.forward_over(context.train_set, keys=("features",))
        features, targets = outputs["features"], outputs["targets"]
        feature_mean = training_feature_mean(features)
        sums, counts = normalized_feature_sums(features.double() - feature_mean, targets, self.num_classes)
        all_reduce_sum(sums)
        all_reduce_sum(counts)
        if (counts == 0).any():
            raise ValueError(f"NCM: classes {torch.nonzero(counts == 0).flatten().tolist()} have no training image")
        classifier = context.model.head.balanced
        classifier.feature_mean.copy_(feature_mean.float())
        classifier.means.copy_((sums / counts.unsqueeze(1)).float())


def training_feature_mean(features: torch.Tensor) -> torch.Tensor:
    """(D,) mean of the training features over all ranks, in float64 (Kang et al.'s ``featmean``)."""
    total = all_reduce_sum(features.double().sum(0))
    count = all_reduce_sum(torch.tensor(float(features.shape[0]), dtype=torch.float64, device=features.device))
    return total / count.clamp(min=1)


def normalized_feature_sums(features: torch.Tensor, targets: torch.Tensor, num_classes: int):
    """(sum of the L2-normalised features per class (C, D), images per class (C,)), in float64."""
    features = torch.nn.functional.normalize(features.double(), dim=1)
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float64, device=features.device)
    sums.index_add_(0, targets, features)
    counts = torch.zeros(num_classes, dtype=torch.float64, device=features.device)
    counts.index_add_(0, targets, torch.ones_like(targets, dtype=torch.float64))
    return sums, counts
