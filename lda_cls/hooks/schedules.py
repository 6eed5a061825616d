"""Epoch-dependent behaviour set by the config: hooks whose ``before_epoch(epoch)`` runs at the
start of every epoch (0-based), after the model is put in training mode.

* ``ClassWeightSchedule``: the loss's per-class weights w_y (REWEIGHT.TYPE) from REWEIGHT.START_EPOCH
  on, 1 before: RW / CB (start 0) and deferred re-weighting, DRW (Cao et al. 2019: 160 of 200).
* ``DeferredResampling``: the sampler switches to SAMPLER.DEFERRED at SAMPLER.DEFERRED_EPOCH
  (DRS, Cao et al. 2019), and back before it, so that a resumed run picks the right one.
A method adds its own hooks (e.g. a frozen backbone kept in eval mode, lda_cls/methods/decoupling.py).
Every hook is stateless in the epoch: resuming at any epoch gives the uninterrupted run's behaviour.
"""
from typing import List

import torch

from ..methods.class_weights import class_weights
from .base import HookBase

__all__ = ["ClassWeightSchedule", "DeferredResampling", "build_hooks"]


class ClassWeightSchedule(HookBase):
    def __init__(self, criterion, weights: torch.Tensor, start_epoch: int):
        if not hasattr(criterion, "set_class_weights"):
            raise ValueError(f"REWEIGHT.TYPE is set, but the loss {type(criterion).__name__} takes no class weights "
                             f"(LDA weights its balanced risk itself); set REWEIGHT.TYPE none")
        self.criterion = criterion
        self.weights = weights
        self.start_epoch = int(start_epoch)

    def before_epoch(self, epoch: int) -> None:
        active = epoch >= self.start_epoch
        self.criterion.set_class_weights(self.weights if active else torch.ones_like(self.weights))


class DeferredResampling(HookBase):
    def __init__(self, sampler, first: str, deferred: str, start_epoch: int):
        self.sampler, self.first, self.deferred, self.start_epoch = sampler, first, deferred, int(start_epoch)
        sampler.use(deferred)  # a wrong name fails now, not at the switch
        sampler.use(first)

    def before_epoch(self, epoch: int) -> None:
        self.sampler.use(self.deferred if epoch >= self.start_epoch else self.first)


def _check_start(key: str, start_epoch: int, epochs: int) -> None:
    if not 0 <= start_epoch < epochs:
        raise ValueError(f"{key} {start_epoch} never takes effect in SOLVER.EPOCHS {epochs} epochs; "
                         f"set it in [0, {epochs}) (Cao et al.'s 160 is for the 200-epoch CIFAR schedule)")


def build_hooks(cfg, class_counts, criterion, sampler, method_hooks=()) -> List[HookBase]:
    """The config's hooks (re-weighting, deferred re-sampling) followed by the method's own."""
    hooks: List[HookBase] = []
    if cfg.REWEIGHT.TYPE != "none":
        _check_start("REWEIGHT.START_EPOCH", cfg.REWEIGHT.START_EPOCH, cfg.SOLVER.EPOCHS)
        weights = class_weights(cfg.REWEIGHT.TYPE, class_counts, cfg.REWEIGHT.BETA)
        hooks.append(ClassWeightSchedule(criterion, weights, cfg.REWEIGHT.START_EPOCH))
    if cfg.SAMPLER.DEFERRED:
        _check_start("SAMPLER.DEFERRED_EPOCH", cfg.SAMPLER.DEFERRED_EPOCH, cfg.SOLVER.EPOCHS)
        hooks.append(DeferredResampling(sampler, cfg.SAMPLER.NAME, cfg.SAMPLER.DEFERRED, cfg.SAMPLER.DEFERRED_EPOCH))
    return hooks + list(method_hooks)
