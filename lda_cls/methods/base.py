"""The method registry: one class per long-tailed method, found by the name in ``cfg.METHOD``.

A method says four things, and the trainer (lda_cls/engine.py) asks nothing else:

* ``head_layout``: whether the model carries LDA's h', h and p ("lda"), one classifier h
  ("ce"), or h and p ("projection"); h's kind is ``MODEL.CLASSIFIER``, a config value;
* ``build_criterion()``: the loss, fn(model outputs, targets) -> {"loss": ..., ...};
* ``prepare(context)``: what happens before the optimizer is built (two-stage methods:
  load stage-1 weights, freeze, re-initialise or re-scale the classifier);
* ``hooks(context)``: epoch-dependent behaviour of its own (lda_cls/hooks); the
  config-driven ones (DRW, DRS) are added by ``hooks.build_hooks`` for every method.

``context`` is a ``MethodContext`` (lda_cls/methods/context.py): the model, device, logger, output
directory, datasets and ``forward_over(dataset)``; a method sees nothing else of the trainer.

Methods that differ only in configuration (``ce`` / ``rw``; ``ce_drw`` / ``ce_drs``) share a class
registered under several names; each name has configs/cls/methods/<name>.yaml.
"""
from typing import Callable, Dict, List, Sequence

from torch import nn

from ..models import LongTailClassifier, build_model

__all__ = ["Method", "METHODS", "register_method", "method_class", "build_method", "build_method_model"]

# name -> Method subclass. A dict rather than fvcore's Registry: one class serves several
# names here, and fvcore names an entry after its object.
METHODS: Dict[str, type] = {}


def register_method(*names: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        for name in names:
            if name in METHODS:
                raise KeyError(f"method {name!r} is registered twice ({METHODS[name].__name__}, {cls.__name__})")
            METHODS[name] = cls
        return cls
    return wrap


def method_class(name: str) -> type:
    if name not in METHODS:
        raise ValueError(f"unknown METHOD {name!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[name]


class Method:
    """Base: a one-stage method with a single classifier and no hooks of its own."""

    head_layout = "ce"

    def __init__(self, cfg, class_counts: Sequence[int]):
        self.cfg = cfg
        self.class_counts = list(class_counts)
        self.num_classes = len(self.class_counts)

    def build_criterion(self) -> nn.Module:
        raise NotImplementedError

    def prepare(self, context) -> None:
        """Called by Trainer.train before the optimizer exists (and again on --resume)."""
        if self.cfg.DECOUPLE.STAGE1_WEIGHTS:
            raise ValueError(f"METHOD {self.cfg.METHOD} is one-stage: --weights / DECOUPLE.STAGE1_WEIGHTS "
                             f"is for two-stage methods (crt, lws, tau_norm, ncm, posthoc_la) or --eval-only")

    def hooks(self, context) -> List:
        return []


def build_method(cfg, class_counts: Sequence[int]) -> Method:
    return method_class(cfg.METHOD)(cfg, class_counts)


def build_method_model(cfg, num_classes: int) -> LongTailClassifier:
    """The model of cfg with the head layout of cfg.METHOD (``lda_cls.build_model``)."""
    return build_model(cfg, num_classes, method_class(cfg.METHOD).head_layout)
