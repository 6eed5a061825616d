"""Evaluate-and-select: every TEST.EVAL_PERIOD epochs and after the last one, evaluate on the selection
split and keep the selected weights in model_best.pth.

Selected: the best top-1 of h on the validation split; without one (CIFAR, image folders without val/),
the final epoch, so that the test split never selects the headline of results.json. The best epoch on
test is kept apart as ``test_selected``, an optimistic figure reported as such."""
import os

from lda_common.atomic_files import atomic_save

from ..run_dir import BEST_CHECKPOINT
from ..utils import is_main_process
from .base import HookBase

__all__ = ["EvalAndSelect", "save_selected"]


def save_selected(model, output_dir: str, epoch: int, split: str, result: dict) -> None:
    """model_best.pth: the selected weights, with the epoch and the evaluation that selected them."""
    if is_main_process():
        atomic_save({"model": model.state_dict(), "epoch": epoch, split: result},
                    os.path.join(output_dir, BEST_CHECKPOINT))


class EvalAndSelect(HookBase):
    def __init__(self, eval_period: int, epochs: int):
        self.eval_period, self.epochs = int(eval_period), int(epochs)

    def after_epoch(self, epoch: int) -> None:
        done = epoch + 1
        finished = done == self.epochs
        if done % self.eval_period and not finished:
            return
        trainer, state = self.trainer, self.trainer.state
        split = trainer.selection_split
        result = trainer.evaluate(split)
        state.eval_result = (done, split, result)  # for the writer (MetricsWriter)
        top1 = result["balanced"]["top1"]
        if split == "test" and (state.test_selected is None or top1 > state.test_selected["balanced"]["top1"]):
            state.test_selected = {"epoch": done, **result}
        if (top1 > state.best_top1) if split == "val" else finished:
            state.best_top1, state.best_epoch = top1, done
            save_selected(trainer.model, trainer.output_dir, done, split, result)
