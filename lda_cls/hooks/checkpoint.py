"""last_checkpoint.pth every CHECKPOINT_PERIOD epochs, after the last epoch and at SOLVER.STOP_EPOCH:
everything --resume needs (``Trainer.training_state``), every rank's RNG state included."""
import os

from lda_common.atomic_files import atomic_save

from ..run_dir import LAST_CHECKPOINT
from ..utils import all_gather_objects, is_main_process, rng_state
from .base import HookBase

__all__ = ["PeriodicCheckpointer"]


class PeriodicCheckpointer(HookBase):
    def __init__(self, period: int, epochs: int, stop_epoch: int):
        self.period, self.epochs, self.stop_epoch = int(period), int(epochs), int(stop_epoch)

    def after_epoch(self, epoch: int) -> None:
        done = epoch + 1
        if done % self.period and done not in (self.epochs, self.stop_epoch):
            return
        rng = all_gather_objects(rng_state())  # a collective: every rank takes part
        if is_main_process():
            atomic_save(self.trainer.training_state(done, rng), os.path.join(self.trainer.output_dir, LAST_CHECKPOINT))
        self.trainer.state.saved_epoch = done
