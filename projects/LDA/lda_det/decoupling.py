"""Two-stage training by configuration: which parameters train, which start afresh.

cRT (Kang et al., "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020):
stage 2 loads the stage-1 model, re-initialises the classifier, freezes everything else and re-trains
the classifier under class-balanced sampling. Here that is MODEL.WEIGHTS + MODEL.REINITIALIZED_PARAMETERS
+ MODEL.TRAINABLE_PARAMETERS + DATALOADER.SAMPLER_TRAIN, run by the same train_net.py.
"""
import logging
from contextlib import contextmanager
from typing import Dict, Sequence

import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

logger = logging.getLogger(__name__)


def _matching(model: nn.Module, prefixes: Sequence[str], key: str) -> Dict[str, nn.Parameter]:
    """Parameters whose names start with one of ``prefixes``; a prefix that names none is an error."""
    parameters = dict(model.named_parameters())
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in parameters):
            raise ValueError(f"{key}: prefix {prefix!r} matches no parameter of the model (names look like "
                             f"{sorted(parameters)[:3]} ... {sorted(parameters)[-2:]})")
    return {name: p for name, p in parameters.items() if name.startswith(tuple(prefixes))}


def restrict_trainable_parameters(model: nn.Module, prefixes: Sequence[str],
                                  key: str = "MODEL.TRAINABLE_PARAMETERS") -> nn.Module:
    """Freeze every parameter not named by ``prefixes`` (empty: leave all as they are).

    A BatchNorm2d whose parameters are all frozen becomes detectron2's FrozenBatchNorm2d: in train mode
    BatchNorm would still normalise with batch statistics and update its running ones, changing the
    frozen representation (the demo backbone trains BN from scratch; LVIS configs use FrozenBN already).
    """
    if not prefixes:
        return model
    trainable = _matching(model, prefixes, key)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    # Other norms (GN, FrozenBN) keep no running statistics; BatchNorm1d has no frozen counterpart in
    # detectron2 (lda_det's models have none).
    frozen_norms = [name for name, module in model.named_modules()
                    if isinstance(module, nn.BatchNorm2d) and not name.startswith(tuple(prefixes))
                    and not any(p.requires_grad for p in module.parameters())]
    for name in frozen_norms:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, FrozenBatchNorm2d.convert_frozen_batchnorm(getattr(parent, child)))
    total = sum(p.numel() for p in model.parameters())
    logger.info(f"{key}: {sum(p.numel() for p in trainable.values())} of {total} parameters trainable "
                f"({len(trainable)} tensors: {sorted(trainable)}); {len(frozen_norms)} BatchNorm layers frozen")
    return model


@contextmanager
def keeping_initialisation(model: nn.Module, prefixes: Sequence[str],
                           key: str = "MODEL.REINITIALIZED_PARAMETERS"):
    """Parameters named by ``prefixes`` leave the block (a checkpoint load) with the values they entered it."""
    initial = {name: p.detach().clone() for name, p in _matching(model, prefixes, key).items()}
    yield
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in initial.items():
            parameters[name].copy_(value)
    if initial:
        logger.info(f"{key}: re-initialised {sorted(initial)} (not taken from the loaded weights)")
