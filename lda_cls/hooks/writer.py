"""What a training run records: metrics.jsonl (one JSON object per logged step and per evaluation),
its log lines and TensorBoard scalars, on the main process; and the stop on a non-finite loss, which
the writer is the first to see (it reads the losses on the host, the one sync of a logging step)."""
import math
import os
from typing import Optional

import torch
from torch.utils.tensorboard import SummaryWriter

from lda_common.strict_json import strict_json_dumps

from ..run_dir import LAST_CHECKPOINT
from ..utils import all_reduce_sum, is_main_process, world_size
from .base import HookBase

__all__ = ["MetricsWriter", "TrainingDiverged", "METRICS_FILE", "append_metrics", "log_result", "write_eval_record"]

METRICS_FILE = "metrics.jsonl"
# Loss outputs that are states, not per-step values: their current value is logged, not a window mean.
STATE_KEYS = ("alpha", "delta_acc", "balanced_coefficient")


class TrainingDiverged(RuntimeError):
    """A logged loss was NaN or inf: training stopped before any checkpoint could hold the diverged model."""

    user_error = True  # the settings' doing, not a bug: lda_common.cli prints the message alone


def append_metrics(output_dir: str, record: dict) -> None:
    if is_main_process():
        with open(os.path.join(output_dir, METRICS_FILE), "a") as handle:
            handle.write(strict_json_dumps(record) + "\n")


def log_result(logger, label: str, split: str, result: dict) -> None:
    for classifier, metrics in result.items():
        if metrics is not None:
            logger.info(f"{label} {split} {classifier}: " +
                        ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if v is not None))


def write_eval_record(logger, output_dir: str, epoch: int, split: str, result: dict,
                      tensorboard: Optional[SummaryWriter] = None) -> None:
    append_metrics(output_dir, {"type": "eval", "epoch": epoch, "split": split, **result})
    log_result(logger, f"epoch {epoch}", split, result)
    if tensorboard is None:
        return
    for classifier, metrics in result.items():
        for key, value in (metrics or {}).items():
            if value is not None:
                tensorboard.add_scalar(f"{split}/{classifier}/{key}", value, epoch)


def read_logged(stacked: torch.Tensor):
    """The logged values on the host and whether any is NaN / inf on any rank: under DDP every rank must
    stop together, or the others would wait for it forever."""
    values = stacked.cpu().tolist()
    non_finite = not all(math.isfinite(value) for value in values)
    if world_size() > 1:
        flag = all_reduce_sum(torch.tensor([int(non_finite)], device=stacked.device))
        non_finite = bool(flag.item())
    return values, non_finite


class MetricsWriter(HookBase):
    """Every ``log_period`` steps and at the last step of each epoch: the window means of the losses (their
    sums stay on the device in between), the current alpha / delta acc, the lr; after each epoch its speed
    and the evaluation that ``EvalAndSelect`` left in ``trainer.state.eval_result``."""

    def __init__(self, log_period: int, global_batch: int):
        self.log_period = int(log_period)
        self.global_batch = int(global_batch)
        self.tensorboard: Optional[SummaryWriter] = None
        self.sums, self.window_steps = None, 0

    def before_train(self) -> None:
        if is_main_process():
            self.tensorboard = SummaryWriter(os.path.join(self.trainer.output_dir, "tensorboard"))

    def before_epoch(self, epoch: int) -> None:
        self.sums, self.window_steps = None, 0

    def after_step(self) -> None:
        state = self.trainer.state
        losses = state.losses
        self.sums = losses if self.sums is None else {k: self.sums[k] + losses[k] for k in self.sums}
        self.window_steps += 1
        if state.iteration % self.log_period == 0 or state.step_in_epoch == self.trainer.iters_per_epoch - 1:
            self._write_window()

    def _write_window(self) -> None:
        state = self.trainer.state
        keys = list(self.sums)
        states = [k for k in STATE_KEYS if k in state.losses]
        values, diverged = read_logged(torch.stack([self.sums[k] for k in keys] + [state.losses[k] for k in states]))
        record = {k: v / self.window_steps for k, v in zip(keys, values)}
        record.update(zip(states, values[len(keys):]))
        record["lr"] = state.step_lr
        append_metrics(self.trainer.output_dir, {"type": "train", "epoch": state.epoch + 1, "iter": state.iteration,
                                                 **record})
        if diverged:
            self._stop(record)
        if self.tensorboard is not None:
            for key, value in record.items():
                self.tensorboard.add_scalar(f"train/{key}", value, state.iteration)
        self.trainer.progress.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.4f}")
        self.sums, self.window_steps = None, 0

    def _stop(self, record: dict) -> None:
        # The window sums every step's loss and the last step of each epoch is logged, so no checkpoint is
        # written after a non-finite loss: last_checkpoint.pth stays good.
        state = self.trainer.state
        last_path = os.path.join(self.trainer.output_dir, LAST_CHECKPOINT)
        message = (f"non-finite loss at epoch {state.epoch + 1}, iteration {state.iteration} "
                   f"({', '.join(f'{k} {v}' for k, v in record.items())}): training stopped. "
                   + (f"{last_path} (epoch {state.saved_epoch}) is the last good checkpoint, kept. "
                      if state.saved_epoch else "No checkpoint was written before it. ")
                   + "Lower SOLVER.BASE_LR or check the LDA.* settings.")
        self.trainer.logger.error(message)
        raise TrainingDiverged(message)

    def after_epoch(self, epoch: int) -> None:
        trainer = self.trainer
        seconds = trainer.state.epoch_seconds
        trainer.logger.info(f"epoch {epoch + 1}: {seconds:.1f}s, "
                            f"{trainer.iters_per_epoch * self.global_batch / seconds:.0f} img/s")
        if trainer.state.eval_result is not None:
            write_eval_record(trainer.logger, trainer.output_dir, *trainer.state.eval_result, self.tensorboard)
            trainer.state.eval_result = None

    def after_train(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
