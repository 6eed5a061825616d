"""Hooks of the one trainer (lda_cls/engine.py), detectron2's protocol (hooks/base.py).

    base.py        HookBase: before_train, before_epoch, after_step, after_epoch, after_train
    schedules.py   the config's epoch-dependent behaviour: DRW / RW / CB weights, DRS (build_hooks)
    evaluation.py  EvalAndSelect: evaluation and the selected weights, model_best.pth
    checkpoint.py  PeriodicCheckpointer: last_checkpoint.pth, what --resume reads
    writer.py      MetricsWriter: metrics.jsonl, TensorBoard, the stop on a non-finite loss

A method's own hooks live with the method (e.g. FrozenInEval, lda_cls/methods/decoupling.py).
"""
from .base import HookBase  # first: the methods' hooks import it while schedules.py imports the methods
from .checkpoint import PeriodicCheckpointer
from .evaluation import EvalAndSelect
from .schedules import ClassWeightSchedule, DeferredResampling, build_hooks
from .writer import MetricsWriter, TrainingDiverged

__all__ = ["HookBase", "ClassWeightSchedule", "DeferredResampling", "build_hooks", "EvalAndSelect",
           "PeriodicCheckpointer", "MetricsWriter", "TrainingDiverged"]
