"""The test-time classifier h, by name (``MODEL.CLASSIFIER``): what each compared method puts on the features.

Every classifier maps pooled features (B, D) to logits (B, C) and exposes
``effective_weight()`` (C, D), the per-class vectors whose norms the analysis
plots (paper Fig. 4a; Kang et al. 2020 Fig. 2). Parameter names follow
``nn.Linear`` ("weight", "bias") so that a stage-1 checkpoint loads into any
stage-2 classifier that re-uses them.

* ``linear``: nn.Linear, the usual classifier (CE and most losses; cRT re-trains it).
* ``cosine``: logits = cos(x, w_y), no bias: LDAM's normalised linear layer (Cao et al. 2019,
  official models/resnet_cifar.py NormedLinear); the loss scales it by s.
* ``lws``: f_y (w_y . x + b_y) with w, b frozen and the scales f learned (Kang et al. 2020, Sec. 4).
* ``tau_norm``: (w_y / ||w_y||^tau) . x, bias dropped as in Kang et al.'s tau-normalisation; tau is a buffer
  chosen on the validation split (lda_cls/methods/decoupling.py).
* ``ncm``: nearest class mean (Kang et al. 2020, Sec. 4) as their code's KNNClassifier with feat_type
  "cl2n": features centred on the training features' mean and L2-normalised, class means of those
  (not re-normalised); logits x.mu_y / D (their dist_type "cos") or -|x - mu_y|^2 ("l2", ``ncm_euclidean``).
* ``logit_adjusted``: a linear classifier whose eval-mode logits are w.x + b - tau log pi_y
  (post-hoc logit adjustment, Menon et al. 2021, Eq. 3); training-mode logits are plain.
"""
from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CLASSIFIERS", "build_classifier", "CosineClassifier", "LWSClassifier", "TauNormClassifier",
           "NCMClassifier", "LogitAdjustedClassifier", "effective_weight"]

# name -> fn(in_features, num_classes, bias) -> nn.Module; a plain dict because fvcore's Registry
# names entries after the object, and these names are config values.
CLASSIFIERS: Dict[str, Callable[..., nn.Module]] = {}


def register_classifier(name: str):
    def wrap(builder):
        if name in CLASSIFIERS:
            raise KeyError(f"classifier {name!r} is registered twice")
        CLASSIFIERS[name] = builder
        return builder
    return wrap


def build_classifier(name: str, in_features: int, num_classes: int, bias: bool = True) -> nn.Module:
    if name not in CLASSIFIERS:
        raise ValueError(f"MODEL.CLASSIFIER must be one of {sorted(CLASSIFIERS)}, got {name!r}")
    return CLASSIFIERS[name](in_features, num_classes, bias)


def effective_weight(classifier: nn.Module) -> torch.Tensor:
    """(C, D) class vectors of any classifier here (nn.Linear's weight for the plain one)."""
    if hasattr(classifier, "effective_weight"):
        return classifier.effective_weight()
    return classifier.weight


@register_classifier("linear")
def _linear(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return nn.Linear(in_features, num_classes, bias=bias)


class CosineClassifier(nn.Module):
    """cos(x, w_y); initialised like Cao et al.'s NormedLinear (uniform, then unit rows).

    Their models/resnet_cifar.py ``NormedLinear`` holds the weight as (D, C) and draws
    ``uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)``: i.i.d. U(-1, 1) entries, each class column
    rescaled to norm 1 - 1e-7 / |u|. Here the same law on (C, D) rows, rescaled to norm 1: the
    forward is the same (both normalise the weight), but a seed gives other vectors, because the
    random numbers fill the (C, D) layout row by row rather than the (D, C) one.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features).uniform_(-1, 1))
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()

    def effective_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)


@register_classifier("cosine")
def _cosine(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return CosineClassifier(in_features, num_classes)


class LWSClassifier(nn.Linear):
    """Learnable weight scaling: logits_y = f_y (w_y . x + b_y); only ``scales`` train in stage 2."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True):
        super().__init__(in_features, num_classes, bias=bias)
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return super().forward(features) * self.scales

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.scales.unsqueeze(1)


@register_classifier("lws")
def _lws(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return LWSClassifier(in_features, num_classes, bias)


class TauNormClassifier(nn.Module):
    """w_y / ||w_y||^tau, no bias (Kang et al. 2020, Eq. in Sec. 4 "tau-normalized classifier")."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        # Kept only so that a stage-1 checkpoint with a bias loads; the normalised classifier ignores it.
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None
        self.register_buffer("tau", torch.zeros(()))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def effective_weight(self, tau=None) -> torch.Tensor:
        tau = self.tau if tau is None else tau
        return self.weight / self.weight.norm(dim=1, keepdim=True).clamp(min=1e-12).pow(tau)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.effective_weight().t()


@register_classifier("tau_norm")
def _tau_norm(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return TauNormClassifier(in_features, num_classes, bias)


NCM_METRICS = ("cosine", "euclidean")


class NCMClassifier(nn.Module):
    """Nearest class mean, Kang et al.'s models/KNNClassifier.py with feat_type "cl2n" (their default).

    ``feature_mean`` (D,): mean of the training features; ``means`` (C, D): per class, the mean of the
    centred, L2-normalised training features, not re-normalised (both set by the ncm method). A query x
    becomes x~ = (x - feature_mean) / |x - feature_mean|; logits x~.mu_y / D ("cosine": their
    ``cos_similarity``, the product divided by the feature dimension) or -|x~ - mu_y|^2 ("euclidean":
    their ``l2_similarity``).
    """

    def __init__(self, in_features: int, num_classes: int, metric: str = "cosine"):
        super().__init__()
        if metric not in NCM_METRICS:
            raise ValueError(f"NCM metric must be one of {NCM_METRICS}, got {metric!r}")
        self.metric = metric
        self.register_buffer("means", torch.zeros(num_classes, in_features))
        self.register_buffer("feature_mean", torch.zeros(in_features))

    def effective_weight(self) -> torch.Tensor:
        return self.means

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = F.normalize(features - self.feature_mean, dim=1)
        if self.metric == "cosine":
            return features @ self.means.t() / features.shape[1]
        return -torch.cdist(features, self.means).pow(2)  # nearest mean = largest logit

    def extra_repr(self) -> str:
        return f"metric={self.metric!r}"


@register_classifier("ncm")
def _ncm(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return NCMClassifier(in_features, num_classes)


@register_classifier("ncm_euclidean")
def _ncm_euclidean(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return NCMClassifier(in_features, num_classes, metric="euclidean")


class LogitAdjustedClassifier(nn.Linear):
    """Eval-mode logits w.x + b - tau log pi_y; ``log_prior`` (log pi_y) and ``tau`` are buffers."""

    def __init__(self, in_features: int, num_classes: int, bias: bool = True):
        super().__init__(in_features, num_classes, bias=bias)
        self.register_buffer("log_prior", torch.zeros(num_classes))
        self.register_buffer("tau", torch.ones(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = super().forward(features)
        return logits if self.training else logits - self.tau * self.log_prior


@register_classifier("logit_adjusted")
def _logit_adjusted(in_features: int, num_classes: int, bias: bool) -> nn.Module:
    return LogitAdjustedClassifier(in_features, num_classes, bias)
