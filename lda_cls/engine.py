"""Trainer: the training loop of lda_cls, its set-up, resume and finish.

The loop is detectron2's (``train``: restore, ``train_one_epoch`` per epoch, ``finish``); everything it
does between steps and epochs is a hook (lda_cls/hooks: evaluation and selection, the metrics writer,
checkpoints, the config's and the method's schedules). A method sees a ``MethodContext``, not the trainer.

Files in the output directory:
  log.txt, metrics.jsonl (one JSON object per logged step and per evaluation),
  tensorboard/, config.yaml, last_checkpoint.pth (everything --resume needs),
  model_best.pth (the selected weights: best validation top-1 of h where the
  dataset has a validation split, else the final epoch), model_deploy.pth
  (backbone + h), results.json (test split, selected weights); run.lock (held by the
  run in progress, lda_cls/run_dir.py); eval_results.json (--eval-only's record, which
  writes nothing else there).
Every file is written under a temporary name of its writer's own, then renamed (lda_common.atomic_files);
a resumed run continues only with its own config (run_dir.read_resume_checkpoint).

The test split never selects anything that results.json reports as its headline:
without a validation split the headline is the final epoch, and the best epoch
on test is reported apart, as "test_selected".
"""
import json
import os
import time
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from timm.utils import distribute_bn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from lda_common.atomic_files import atomic_save, atomic_write_text
from lda_common.checkpoint_io import load_checkpoint
from lda_common.strict_json import strict_json_dumps

from .data import (BatchPreprocess, DeviceBatches, FileListDataset, TensorImageDataset, build_dataset,
                   class_counts_of, shot_groups)
from .data.decode_check import check_decodable, dataset_paths
from .evaluation import evaluate
from .hooks import EvalAndSelect, HookBase, MetricsWriter, PeriodicCheckpointer, TrainingDiverged, build_hooks
from .hooks.evaluation import save_selected
from .hooks.writer import METRICS_FILE, log_result, write_eval_record
from .inference import OUTPUT_KEYS, forward_over
from .methods import build_method
from .methods.context import MethodContext
from .models import build_model, deploy_state_dict, load_model_weights
from .precision import autocast_dtype_for
from .run_dir import (BEST_CHECKPOINT, DEPLOY_WEIGHTS, LAST_CHECKPOINT, drop_partial_last_line,
                      read_resume_checkpoint, world_size_change)
from .samplers import build_train_sampler
from .solver import build_optimizer, build_scheduler
from .utils import (init_distributed, is_main_process, rank, seed_everything, set_rng_state, setup_logger, synchronize,
                    world_size)

__all__ = ["Trainer", "TrainState", "TrainingDiverged", "LAST_CHECKPOINT", "BEST_CHECKPOINT", "DEPLOY_WEIGHTS"]


@dataclass
class TrainState:
    """The run in progress, as the hooks read it; the first five fields travel in last_checkpoint.pth."""

    epoch: int = 0  # epochs done (during an epoch: its 0-based index)
    iteration: int = 0  # optimizer steps done
    best_top1: float = -1.0  # the selected weights' top-1 of h on the validation split (-1: none yet)
    best_epoch: int = -1
    test_selected: Optional[dict] = None  # without a validation split: the best epoch on test, reported apart
    saved_epoch: int = 0  # epoch of the checkpoint in last_checkpoint.pth (0: none yet)
    # The step that just ran (for after_step) and the epoch that just ended (for after_epoch):
    step_in_epoch: int = 0
    losses: Optional[Dict[str, torch.Tensor]] = None  # detached, on the device
    step_lr: float = 0.0  # the lr the step used, before the schedule moved on
    epoch_seconds: float = 0.0
    eval_result: Optional[Tuple[int, str, dict]] = None  # (epoch, split, result), left by EvalAndSelect


class Trainer:
    def __init__(self, cfg, output_dir: str, log_file: Optional[str] = "log.txt"):
        """``log_file``: the log in ``output_dir`` (None: stdout only, as --eval-only, which must not add
        to the log of a training run in the same directory)."""
        self.cfg = cfg
        self.output_dir = output_dir
        self.device = init_distributed(timeout_s=cfg.DIST_TIMEOUT_S)
        if is_main_process():
            os.makedirs(output_dir, exist_ok=True)
        synchronize()
        self.logger = setup_logger(output_dir, log_file=log_file)
        self.autocast_dtype, precision = autocast_dtype_for(cfg.SOLVER.AMP, self.device)
        self.logger.info(precision)
        self.channels_last = cfg.SOLVER.CHANNELS_LAST and self.device.type == "cuda"
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
        if cfg.NUM_THREADS > 0:
            torch.set_num_threads(cfg.NUM_THREADS)
        seed_everything(cfg.SEED + rank())
        self._build_datasets()
        self.method = build_method(cfg, self.class_counts)  # lda_cls/methods: loss, hooks, two-stage set-up
        self.model = build_model(cfg, self.num_classes, self.method.head_layout).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = self.method.build_criterion().to(self.device)
        self.world_size_changes = []  # resumes under another world size (--allow-world-size-change)
        self.hooks: List[HookBase] = []
        self.state = TrainState()

    # ----------------------------------------------------------------- data
    def _build_datasets(self) -> None:
        cfg = self.cfg
        self.train_set, self.num_classes = build_dataset(cfg, "train")
        self.class_counts = class_counts_of(self.train_set, self.num_classes)
        self.test_set, _ = build_dataset(cfg, "test")
        # None for CIFAR and image folders without val/: then nothing is selected, the final epoch is reported.
        self.val_set = build_dataset(cfg, "val")[0]
        self.selection_split = "val" if self.val_set is not None else "test"
        if cfg.DATASET.CHECK_EVAL_IMAGES:
            self._check_eval_images()
        in_memory = isinstance(self.train_set, TensorImageDataset)
        self.train_preprocess = BatchPreprocess.from_config(cfg, train=True, in_memory=in_memory).to(self.device)
        self.test_preprocess = BatchPreprocess.from_config(cfg, train=False, in_memory=in_memory).to(self.device)

    def _check_eval_images(self) -> None:
        for split, dataset in (("val", self.val_set), ("test", self.test_set)):
            if isinstance(dataset, FileListDataset):  # in-memory sets were decoded when they were built
                check_decodable(dataset_paths(dataset), f"the {self.cfg.DATASET.NAME} {split} split",
                                self.cfg.DATASET.NUM_WORKERS)

    def _train_loader(self):
        if self.cfg.SOLVER.BATCH_SIZE % world_size():
            raise ValueError(f"SOLVER.BATCH_SIZE {self.cfg.SOLVER.BATCH_SIZE} is the global batch; "
                             f"it must divide by the {world_size()} processes")
        per_rank = self.cfg.SOLVER.BATCH_SIZE // world_size()
        sampler = build_train_sampler(self.cfg, self.train_set, world_size(), rank(), self.num_classes)
        if len(sampler) < per_rank:
            raise ValueError(f"{len(self.train_set)} training images cannot fill one batch of {per_rank} per process")
        if self._on_device(self.train_set):
            return DeviceBatches(self.train_set, per_rank, self.device, sampler=sampler, drop_last=True), sampler
        loader = DataLoader(self.train_set, batch_size=per_rank, sampler=sampler, drop_last=True,
                            num_workers=self.cfg.DATASET.NUM_WORKERS, pin_memory=self.device.type == "cuda",
                            persistent_workers=self.cfg.DATASET.NUM_WORKERS > 0)
        return loader, sampler

    def _eval_loader(self, dataset):
        # A strided shard per rank, no padding: the summed per-class counts are exact.
        if self._on_device(dataset):
            return DeviceBatches(dataset, max(1, self.cfg.TEST.BATCH_SIZE // world_size()), self.device,
                                 indices=range(rank(), len(dataset), world_size()))
        shard = Subset(dataset, range(rank(), len(dataset), world_size())) if world_size() > 1 else dataset
        return DataLoader(shard, batch_size=max(1, self.cfg.TEST.BATCH_SIZE // world_size()), shuffle=False,
                          num_workers=self.cfg.DATASET.NUM_WORKERS, pin_memory=self.device.type == "cuda")

    def _on_device(self, dataset) -> bool:
        return self.cfg.DATASET.ON_DEVICE and isinstance(dataset, TensorImageDataset)

    def forward_over(self, dataset, keys: Sequence[str] = OUTPUT_KEYS) -> Dict[str, torch.Tensor]:
        """The model's outputs named in ``keys`` and the targets over this rank's shard of ``dataset``."""
        return forward_over(self.model, self._eval_loader(dataset), self.test_preprocess, self.device,
                            self.autocast_dtype, self.channels_last, keys)

    def method_context(self) -> MethodContext:
        """What the method may use of this run (lda_cls/methods/context.py)."""
        return MethodContext(model=self.model, device=self.device, logger=self.logger, output_dir=self.output_dir,
                             train_set=self.train_set, val_set=self.val_set, test_set=self.test_set,
                             forward_over=self.forward_over)

    # ----------------------------------------------------------- evaluation
    def evaluate(self, split: str) -> Dict[str, Optional[dict]]:
        if world_size() > 1:
            # DDP broadcasts BatchNorm statistics at the start of each forward, so after the last training
            # step every rank holds its own; evaluate (and save) rank 0's everywhere. The model's other
            # buffers (NCM means, tau, BN step counts) are equal on every rank by construction.
            distribute_bn(self.model, world_size(), reduce=False)
        dataset = {"val": self.val_set, "test": self.test_set}[split]
        progress = (lambda it: tqdm(it, desc=f"eval {split}", leave=False, dynamic_ncols=True)) \
            if is_main_process() else None
        return evaluate(self.model, self._eval_loader(dataset), self.test_preprocess, self.class_counts,
                        self.device, self.autocast_dtype, self.channels_last,
                        self.cfg.TEST.MANY_THRESHOLD, self.cfg.TEST.FEW_THRESHOLD, progress)

    def eval_only(self, weights: str) -> Dict[str, Optional[dict]]:
        """Evaluate ``weights`` on the test split; the record is eval_results.json alone: metrics.jsonl belongs
        to the training run of the directory, if any, and stays as it was."""
        self.load_weights(weights)
        result = self.evaluate("test")
        log_result(self.logger, "eval-only", "test", result)
        if is_main_process():
            atomic_write_text(os.path.join(self.output_dir, "eval_results.json"),
                              strict_json_dumps({**result, "weights": weights}, indent=2))
        return result

    def load_weights(self, path: str) -> None:
        """Load a checkpoint written by this trainer (full or deploy weights) into the model."""
        load_model_weights(self.model, path, map_location=self.device)

    # ------------------------------------------------------------- training
    def train(self, resume: bool = False, resume_state: Optional[dict] = None,
              allow_world_size_change: bool = False) -> Optional[dict]:
        """Train to SOLVER.EPOCHS (or SOLVER.STOP_EPOCH); returns results.json's dict at the end.

        ``resume``: continue from last_checkpoint.pth, whose config must equal this one outside
        ``run_dir.RESUMABLE_KEYS`` and whose world size this one's (unless ``allow_world_size_change``);
        ``resume_state``: that checkpoint, already read and checked (``run_dir.read_resume_checkpoint``).
        """
        context = self.method_context()
        self.method.prepare(context)  # two-stage methods: stage-1 weights, freezing, classifier (before the optimizer)
        if self.cfg.SOLVER.EPOCHS == 0:  # training-free methods (tau-norm, NCM, post-hoc LA): the prepared model
            return self._finish_untrained()
        self._build_training(context)
        self._restore(resume, resume_state, allow_world_size_change)
        if is_main_process():  # only now: a failed --resume leaves the run's config.yaml as it was
            atomic_write_text(os.path.join(self.output_dir, "config.yaml"), self.cfg.dump())
        self.train_model = self._wrap_for_training()
        self._call_hooks("before_train")
        try:
            for epoch in range(self.state.epoch, self.stop_epoch):
                self.train_one_epoch(epoch)
        finally:
            self._call_hooks("after_train")
        if self.stop_epoch < self.cfg.SOLVER.EPOCHS:
            self.logger.info(f"stopped after epoch {self.stop_epoch} (SOLVER.STOP_EPOCH); continue with --resume")
            return None
        return self.finish(self.state.best_epoch, self.state.best_top1, self.state.test_selected)

    def train_one_epoch(self, epoch: int) -> None:
        # Reseeding per epoch makes an epoch's randomness independent of how we got here (resume == no resume).
        seed_everything(self.cfg.SEED + 1000 * (epoch + 1) + rank())
        self.sampler.set_epoch(epoch)
        self.train_model.train()
        self.criterion.train()
        self._call_hooks("before_epoch", epoch)  # DRW / DRS switches, frozen modules, the writer's window
        start = time.perf_counter()
        self.progress = tqdm(self.loader, desc=f"epoch {epoch + 1}/{self.cfg.SOLVER.EPOCHS}", leave=False,
                             dynamic_ncols=True, disable=not is_main_process())
        for step, (images, targets) in enumerate(self.progress):
            self.state.losses, self.state.step_lr = self.run_step(images, targets)
            self.state.step_in_epoch = step
            self._call_hooks("after_step")
        self.state.epoch_seconds = time.perf_counter() - start
        self._call_hooks("after_epoch", epoch)  # evaluate and select, write, checkpoint
        self.state.epoch = epoch + 1
        synchronize()

    def run_step(self, images: torch.Tensor, targets: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], float]:
        """One optimizer step; (the detached losses, on the device, and the lr the step used). No host sync."""
        images = self.train_preprocess(images.to(self.device, non_blocking=True))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            outputs = self.train_model(images)
        losses = self.criterion(outputs, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        step_lr = self.optimizer.param_groups[0]["lr"]
        self.state.iteration += 1
        self.scheduler.step_update(self.state.iteration)
        return {k: v.detach().float() for k, v in losses.items()}, step_lr

    def _build_training(self, context: MethodContext) -> None:
        """Loader, sampler, optimizer, schedule, scaler and hooks; the hooks in the order they must run."""
        cfg = self.cfg
        self.loader, self.sampler = self._train_loader()
        self.iters_per_epoch = len(self.loader)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.stop_epoch = cfg.SOLVER.EPOCHS if cfg.SOLVER.STOP_EPOCH < 0 else min(cfg.SOLVER.STOP_EPOCH,
                                                                                  cfg.SOLVER.EPOCHS)
        epoch_hooks = build_hooks(cfg, self.class_counts, self.criterion, self.sampler, self.method.hooks(context))
        # after_epoch: evaluate and select first, so that the writer records it and the checkpoint holds it.
        self.register_hooks(epoch_hooks + [EvalAndSelect(cfg.TEST.EVAL_PERIOD, cfg.SOLVER.EPOCHS),
                                           MetricsWriter(cfg.LOG_PERIOD, cfg.SOLVER.BATCH_SIZE),
                                           PeriodicCheckpointer(cfg.CHECKPOINT_PERIOD, cfg.SOLVER.EPOCHS,
                                                                self.stop_epoch)])

    def register_hooks(self, hooks: List[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = weakref.proxy(self)  # as detectron2: no reference cycle between trainer and hooks
        self.hooks = list(hooks)

    def _call_hooks(self, name: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, name)(*args)

    def _wrap_for_training(self):
        if world_size() == 1:
            return self.model
        return DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                       else None)

    # --------------------------------------------------------------- resume
    def _restore(self, resume: bool, resume_state: Optional[dict], allow_world_size_change: bool) -> None:
        """A fresh start, or the state of last_checkpoint.pth (checked by run_dir.read_resume_checkpoint)."""
        cfg = self.cfg
        if not resume:
            self.logger.info(f"training {cfg.METHOD} on {cfg.DATASET.NAME}: {len(self.train_set)} images, "
                             f"{self.num_classes} classes, counts {self.class_counts}")
            return
        last_path = os.path.join(self.output_dir, LAST_CHECKPOINT)
        state = resume_state if resume_state is not None else read_resume_checkpoint(
            last_path, cfg, world_size(), allow_world_size_change)
        self._load_training_state(state, last_path)
        self.state = TrainState(epoch=state["epoch"], iteration=state["iteration"], best_top1=state["best_top1"],
                                best_epoch=state["best_epoch"], test_selected=state.get("test_selected"),
                                saved_epoch=state["epoch"])
        self._note_world_size_change(state, self.state.epoch)
        self._repair_metrics()
        set_rng_state(state["rng"][min(rank(), len(state["rng"]) - 1)])
        self.logger.info(f"resumed from {last_path} at epoch {self.state.epoch}")

    def training_state(self, epoch: int, rng: list) -> dict:
        """last_checkpoint.pth after ``epoch`` epochs: everything --resume needs (``_restore`` reads it back)."""
        state = self.state
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "criterion": self.criterion.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": epoch, "iteration": state.iteration,
                "best_top1": state.best_top1, "best_epoch": state.best_epoch, "test_selected": state.test_selected,
                "rng": rng, "cfg": self.cfg.dump(), "world_size": world_size(),
                "world_size_changes": self.world_size_changes}

    def _load_training_state(self, state: dict, path: str) -> None:
        """Model, optimizer, schedule, loss and scaler states of a checked resume checkpoint."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.criterion.load_state_dict(state["criterion"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            # The configs are equal (read_resume_checkpoint): the code that builds the model changed.
            raise ValueError(f"--resume: {path} does not fit the model this code builds from the same config "
                             f"({type(error).__name__}: {error}); start afresh with --overwrite") from None

    def _note_world_size_change(self, state: dict, epoch: int) -> None:
        """Carry the checkpoint's world-size changes on, adding this resume's if the world size differs."""
        self.world_size_changes = list(state.get("world_size_changes") or [])
        change = world_size_change(state, world_size(), epoch)
        if change is not None:
            self.world_size_changes.append(change)
            self.logger.warning(f"resumed under world size {change['to']}, the checkpoint was written by "
                                f"{change['from']} process(es) (--allow-world-size-change; in results.json)")

    def _repair_metrics(self) -> None:
        """Before a resumed run appends: drop a record cut off by a kill (run_dir.drop_partial_last_line)."""
        path = os.path.join(self.output_dir, METRICS_FILE)
        dropped = drop_partial_last_line(path) if is_main_process() else None
        if dropped is not None:
            self.logger.warning(f"{path}: dropped a partial last line of {len(dropped)} characters, a record cut "
                                f"off when the run was killed: {dropped[:80]!r}")

    # --------------------------------------------------------------- finish
    def _finish_untrained(self) -> dict:
        """SOLVER.EPOCHS 0: the model as ``method.prepare`` left it is the result (epoch 0)."""
        if is_main_process():  # analyze reads the run's config
            atomic_write_text(os.path.join(self.output_dir, "config.yaml"), self.cfg.dump())
        split = self.selection_split
        result = self.evaluate(split)
        write_eval_record(self.logger, self.output_dir, 0, split, result)
        save_selected(self.model, self.output_dir, 0, split, result)
        synchronize()
        return self.finish(0, result["balanced"]["top1"] if split == "val" else -1.0)

    def finish(self, best_epoch: int, best_top1: float, test_selected: Optional[dict] = None) -> dict:
        """Evaluate the selected checkpoint on the test split; write results.json and the deploy weights."""
        best_path = os.path.join(self.output_dir, BEST_CHECKPOINT)
        self.load_weights(best_path)
        if self.val_set is None:
            # The final epoch, already evaluated on test after its training; not repeated.
            test_result = load_checkpoint(best_path)["test"]
        else:
            test_result = self.evaluate("test")
            write_eval_record(self.logger, self.output_dir, best_epoch, "test", test_result)
        results = self._results(test_result, best_epoch, best_top1, test_selected)
        if is_main_process():
            atomic_save(deploy_state_dict(self.model), os.path.join(self.output_dir, DEPLOY_WEIGHTS))
            atomic_write_text(os.path.join(self.output_dir, "results.json"), strict_json_dumps(results, indent=2))
            self.logger.info(f"results: {json.dumps(results)}")
        return results

    def _results(self, test_result: dict, selected_epoch: int, best_val: float,
                 test_selected: Optional[dict]) -> dict:
        counts = np.asarray(self.class_counts)
        groups = shot_groups(counts, self.cfg.TEST.MANY_THRESHOLD, self.cfg.TEST.FEW_THRESHOLD)
        has_val = self.val_set is not None
        extra = {}
        if test_selected is not None:
            extra["test_selected"] = {**test_selected, "note": "best epoch picked on the test split itself: an "
                                      "optimistic figure, not a held-out result; the headline is the final epoch"}
        return {
            **test_result,
            "dataset": self.cfg.DATASET.NAME,
            "imbalance_ratio": float(self.cfg.DATASET.IMBALANCE_RATIO),
            "measured_imbalance_ratio": float(counts.max() / max(counts.min(), 1)),
            "method": self.cfg.METHOD,
            "backbone": self.cfg.MODEL.BACKBONE,
            "num_train_images": int(counts.sum()),
            "num_test_images": len(self.test_set),
            "num_classes": self.num_classes,
            "split_classes": {name: int((groups == g).sum()) for g, name in enumerate(("many", "medium", "few"))},
            "model_selection": "best validation top-1 of h" if has_val else "none: final epoch (no validation split)",
            "selected_epoch": selected_epoch,
            "best_val_top1": best_val if has_val else None,
            **extra,
            # Only a run resumed under another world size has the key: the others' results are unchanged.
            **({"world_size_changes": self.world_size_changes} if self.world_size_changes else {}),
        }
