"""Trainer: the training loop, evaluation, checkpoints and result files of lda_cls.

Files in the output directory:
  log.txt, metrics.jsonl (one JSON object per logged step and per evaluation),
  tensorboard/, config.yaml, last_checkpoint.pth (everything --resume needs),
  model_best.pth (the selected weights: best validation top-1 of h where the
  dataset has a validation split, else the final epoch), model_deploy.pth
  (backbone + h), results.json (test split, selected weights); run.lock (held by the
  run in progress, lda_cls/run_dir.py); eval_results.json (--eval-only's record, which
  writes nothing else there).
Every file is written under a temporary name of its writer's own, then renamed (utils.atomic_save);
a resumed run continues only with its own config (run_dir.read_resume_checkpoint).

The test split never selects anything that results.json reports as its headline:
without a validation split the headline is the final epoch, and the best epoch
on test is reported apart, as "test_selected".
"""
import json
import math
import os
import time
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from .checkpoint_io import load_checkpoint
from .data import BatchPreprocess, DeviceBatches, TensorImageDataset, build_dataset, class_counts_of, shot_groups
from .evaluation import evaluate
from .hooks import build_hooks
from .methods import build_method
from .models import build_model, deploy_state_dict
from .precision import autocast_dtype_for
from .run_dir import drop_partial_last_line, read_resume_checkpoint, world_size_change
from .samplers import build_train_sampler
from .solver import build_optimizer, build_scheduler
from .utils import (atomic_save, atomic_write_text, init_distributed, is_main_process, rank, rng_state,
                    seed_everything, set_rng_state, setup_logger, strict_json_dumps, world_size)

__all__ = ["Trainer", "TrainingDiverged", "LAST_CHECKPOINT", "BEST_CHECKPOINT", "DEPLOY_WEIGHTS"]

LAST_CHECKPOINT = "last_checkpoint.pth"
BEST_CHECKPOINT = "model_best.pth"
DEPLOY_WEIGHTS = "model_deploy.pth"


class TrainingDiverged(RuntimeError):
    """A logged loss was NaN or inf: training stopped before any checkpoint could hold the diverged model."""

    user_error = True  # the settings' doing, not a bug: lda_cls.cli prints the message alone


class Trainer:
    def __init__(self, cfg, output_dir: str, log_file: Optional[str] = "log.txt"):
        """``log_file``: the log in ``output_dir`` (None: stdout only, as --eval-only, which must not add
        to the log of a training run in the same directory)."""
        self.cfg = cfg
        self.output_dir = output_dir
        self.device = init_distributed()
        if is_main_process():
            os.makedirs(output_dir, exist_ok=True)
        if world_size() > 1:
            dist.barrier()
        self.logger = setup_logger(output_dir, log_file=log_file)
        self.autocast_dtype, precision = autocast_dtype_for(cfg.SOLVER.AMP, self.device)
        self.logger.info(precision)
        self.channels_last = cfg.SOLVER.CHANNELS_LAST and self.device.type == "cuda"
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
        if cfg.NUM_THREADS > 0:
            torch.set_num_threads(cfg.NUM_THREADS)
        seed_everything(cfg.SEED + rank())

        train_set, num_classes = build_dataset(cfg, "train")
        self.train_set = train_set
        self.num_classes = num_classes
        self.class_counts = class_counts_of(train_set, num_classes)
        self.test_set, _ = build_dataset(cfg, "test")
        # None for CIFAR and image folders without val/: then nothing is selected, the final epoch is reported.
        self.val_set = build_dataset(cfg, "val")[0]
        self.selection_split = "val" if self.val_set is not None else "test"
        in_memory = isinstance(train_set, TensorImageDataset)
        self.train_preprocess = BatchPreprocess.from_config(cfg, train=True, in_memory=in_memory).to(self.device)
        self.test_preprocess = BatchPreprocess.from_config(cfg, train=False, in_memory=in_memory).to(self.device)

        self.method = build_method(cfg, self.class_counts)  # lda_cls/methods: loss, hooks, two-stage set-up
        self.model = build_model(cfg, num_classes, self.method.head_layout).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = self.method.build_criterion().to(self.device)
        self.world_size_changes = []  # resumes under another world size (--allow-world-size-change)

    # ----------------------------------------------------------------- data
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

    # ----------------------------------------------------------- evaluation
    def evaluate(self, split: str) -> Dict[str, Optional[dict]]:
        if world_size() > 1:
            # DDP broadcasts BatchNorm statistics at the start of each forward, so after the last training
            # step every rank holds its own; evaluate (and save) rank 0's everywhere.
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
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
        self._log_result("eval-only", "test", result)
        if is_main_process():
            atomic_write_text(os.path.join(self.output_dir, "eval_results.json"),
                              strict_json_dumps({**result, "weights": weights}, indent=2))
        return result

    def load_weights(self, path: str) -> None:
        """Load a checkpoint written by this trainer (full or deploy weights) into the model."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file not found: {path}")
        state = self._read_checkpoint(path)
        state = state.get("model", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of weights")
        head = self.model.head
        if not any(key.startswith("head.unbalanced.") for key in state) and head.unbalanced is not None:
            # Deploy weights: backbone + h only; h' and p are not part of them.
            head.unbalanced = head.projection = None
        try:
            self.model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{path} does not match the model of this config: {error}") from None

    def _read_checkpoint(self, path: str):
        return load_checkpoint(path, map_location=self.device)

    # -------------------------------------------------------------- helpers
    def _log_result(self, label: str, split: str, result: dict) -> None:
        for classifier, metrics in result.items():
            if metrics is not None:
                self.logger.info(f"{label} {split} {classifier}: " +
                                 ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if v is not None))

    def _repair_metrics(self) -> None:
        """Before a resumed run appends: drop a record cut off by a kill (run_dir.drop_partial_last_line)."""
        path = os.path.join(self.output_dir, "metrics.jsonl")
        dropped = drop_partial_last_line(path) if is_main_process() else None
        if dropped is not None:
            self.logger.warning(f"{path}: dropped a partial last line of {len(dropped)} characters, a record cut "
                                f"off when the run was killed: {dropped[:80]!r}")

    def _write_jsonl(self, record: dict) -> None:
        if is_main_process():
            with open(os.path.join(self.output_dir, "metrics.jsonl"), "a") as handle:
                handle.write(strict_json_dumps(record) + "\n")

    def _log_eval(self, writer, epoch: int, split: str, result: dict) -> None:
        self._write_jsonl({"type": "eval", "epoch": epoch, "split": split, **result})
        self._log_result(f"epoch {epoch}", split, result)
        for classifier, metrics in result.items():
            if metrics is None:
                continue
            if writer is not None:
                for key, value in metrics.items():
                    if value is not None:
                        writer.add_scalar(f"{split}/{classifier}/{key}", value, epoch)

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

    def _read_logged(self, stacked: torch.Tensor):
        """The logged values on the host (the one sync of a logging step) and whether any is NaN / inf on any
        rank: under DDP every rank must stop together, or the others would wait for it forever."""
        values = stacked.cpu().tolist()
        non_finite = not all(math.isfinite(value) for value in values)
        if world_size() > 1:
            flag = torch.tensor([int(non_finite)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            non_finite = bool(flag.item())
        return values, non_finite

    def _load_training_state(self, state: dict, path: str, optimizer, scheduler, scaler) -> None:
        """Model, optimizer, schedule, loss and scaler states of a checked resume checkpoint."""
        try:
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            self.criterion.load_state_dict(state["criterion"])
            scaler.load_state_dict(state["scaler"])
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

    # ------------------------------------------------------------- training
    def train(self, resume: bool = False, resume_state: Optional[dict] = None,
              allow_world_size_change: bool = False) -> Optional[dict]:
        """Train to SOLVER.EPOCHS (or SOLVER.STOP_EPOCH); returns results.json's dict at the end.

        ``resume``: continue from last_checkpoint.pth, whose config must equal this one outside
        ``run_dir.RESUMABLE_KEYS`` and whose world size this one's (unless ``allow_world_size_change``);
        ``resume_state``: that checkpoint, already read and checked (``run_dir.read_resume_checkpoint``).
        """
        cfg = self.cfg
        self.method.prepare(self)  # two-stage methods: stage-1 weights, freezing, classifier (before the optimizer)
        if cfg.SOLVER.EPOCHS == 0:  # training-free methods (tau-norm, NCM, post-hoc LA): the prepared model
            return self._finish_untrained()
        loader, sampler = self._train_loader()
        hooks = build_hooks(cfg, self.class_counts, self.criterion, sampler, self.method.hooks(self))
        iters_per_epoch = len(loader)
        optimizer = build_optimizer(cfg, self.model)
        scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
        scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)

        start_epoch, global_step, best_top1, best_epoch = 0, 0, -1.0, -1
        test_selected = None  # without a validation split: the best epoch on test, reported apart
        saved_epoch = 0  # epoch of the checkpoint in last_checkpoint.pth (0: none yet)
        last_path = os.path.join(self.output_dir, LAST_CHECKPOINT)
        if resume:
            state = resume_state if resume_state is not None else read_resume_checkpoint(
                last_path, cfg, world_size(), allow_world_size_change)
            self._load_training_state(state, last_path, optimizer, scheduler, scaler)
            start_epoch, global_step = state["epoch"], state["iteration"]
            best_top1, best_epoch = state["best_top1"], state["best_epoch"]
            test_selected = state.get("test_selected")
            saved_epoch = start_epoch
            self._note_world_size_change(state, start_epoch)
            self._repair_metrics()
            set_rng_state(state["rng"][min(rank(), len(state["rng"]) - 1)])
            self.logger.info(f"resumed from {last_path} at epoch {start_epoch}")
        else:
            self.logger.info(f"training {cfg.METHOD} on {cfg.DATASET.NAME}: {len(self.train_set)} images, "
                             f"{self.num_classes} classes, counts {self.class_counts}")
        if is_main_process():  # only now: a failed --resume leaves the run's config.yaml as it was
            atomic_write_text(os.path.join(self.output_dir, "config.yaml"), cfg.dump())

        model = self.model
        if world_size() > 1:
            model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None)
        writer = SummaryWriter(os.path.join(self.output_dir, "tensorboard")) if is_main_process() else None
        stop_epoch = cfg.SOLVER.EPOCHS if cfg.SOLVER.STOP_EPOCH < 0 else min(cfg.SOLVER.STOP_EPOCH, cfg.SOLVER.EPOCHS)

        for epoch in range(start_epoch, stop_epoch):
            # Reseeding per epoch makes an epoch's randomness independent of how we got here (resume == no resume).
            seed_everything(cfg.SEED + 1000 * (epoch + 1) + rank())
            sampler.set_epoch(epoch)
            model.train()
            self.criterion.train()
            for hook in hooks:  # DRW / DRS switches, frozen modules (lda_cls/hooks.py)
                hook.before_epoch(epoch)
            sums, window_steps = None, 0
            epoch_start = time.perf_counter()
            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.SOLVER.EPOCHS}", leave=False, dynamic_ncols=True,
                       disable=not is_main_process())
            for step, (images, targets) in enumerate(bar):
                images = self.train_preprocess(images.to(self.device, non_blocking=True))
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = targets.to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                    enabled=self.autocast_dtype is not None):
                    outputs = model(images)
                losses = self.criterion(outputs, targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step_lr = optimizer.param_groups[0]["lr"]  # the lr this step used, before the schedule moves on
                global_step += 1
                scheduler.step_update(global_step)

                # Accumulate on the device; the host reads the values every LOG_PERIOD steps only.
                detached = {k: v.detach().float() for k, v in losses.items()}
                sums = detached if sums is None else {k: sums[k] + detached[k] for k in sums}
                window_steps += 1
                if global_step % cfg.LOG_PERIOD == 0 or step == iters_per_epoch - 1:
                    # One host sync: window means of the losses; alpha and delta acc are states, so
                    # their current values are reported instead of means.
                    keys = list(sums)
                    states = [k for k in ("alpha", "delta_acc", "balanced_coefficient") if k in detached]
                    stacked = torch.stack([sums[k] for k in keys] + [detached[k] for k in states])
                    values, diverged = self._read_logged(stacked)
                    record = {k: v / window_steps for k, v in zip(keys, values)}
                    record.update(zip(states, values[len(keys):]))
                    record["lr"] = step_lr
                    self._write_jsonl({"type": "train", "epoch": epoch + 1, "iter": global_step, **record})
                    if diverged:
                        # The window sums every step's loss, and the last step of each epoch is logged, so
                        # no checkpoint is written after a non-finite loss: last_checkpoint.pth stays good.
                        if writer is not None:
                            writer.close()
                        message = (
                            f"non-finite loss at epoch {epoch + 1}, iteration {global_step} "
                            f"({', '.join(f'{k} {v}' for k, v in record.items())}): training stopped. "
                            + (f"{last_path} (epoch {saved_epoch}) is the last good checkpoint, kept. "
                               if saved_epoch else "No checkpoint was written before it. ")
                            + "Lower SOLVER.BASE_LR or check the LDA.* settings.")
                        self.logger.error(message)
                        raise TrainingDiverged(message)
                    if writer is not None:
                        for key, value in record.items():
                            writer.add_scalar(f"train/{key}", value, global_step)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.4f}")
                    sums, window_steps = None, 0
            seconds = time.perf_counter() - epoch_start
            self.logger.info(f"epoch {epoch + 1}: {seconds:.1f}s, "
                             f"{iters_per_epoch * cfg.SOLVER.BATCH_SIZE / seconds:.0f} img/s")

            finished = epoch + 1 == cfg.SOLVER.EPOCHS
            if (epoch + 1) % cfg.TEST.EVAL_PERIOD == 0 or finished:
                split = self.selection_split
                result = self.evaluate(split)
                self._log_eval(writer, epoch + 1, split, result)
                top1 = result["balanced"]["top1"]
                if split == "test" and (test_selected is None or top1 > test_selected["balanced"]["top1"]):
                    test_selected = {"epoch": epoch + 1, **result}
                # Selected weights: the best on validation, or without a validation split the final epoch.
                selected = top1 > best_top1 if split == "val" else finished
                if selected:
                    best_top1, best_epoch = top1, epoch + 1
                    if is_main_process():
                        atomic_save({"model": self.model.state_dict(), "epoch": epoch + 1, split: result},
                                    os.path.join(self.output_dir, BEST_CHECKPOINT))
            if (epoch + 1) % cfg.CHECKPOINT_PERIOD == 0 or finished or epoch + 1 == stop_epoch:
                rng = [rng_state()]
                if world_size() > 1:
                    rng = [None] * world_size()
                    dist.all_gather_object(rng, rng_state())
                if is_main_process():
                    atomic_save({"model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "criterion": self.criterion.state_dict(),
                                 "scaler": scaler.state_dict(), "epoch": epoch + 1, "iteration": global_step,
                                 "best_top1": best_top1, "best_epoch": best_epoch,
                                 "test_selected": test_selected, "rng": rng,
                                 "cfg": cfg.dump(), "world_size": world_size(),
                                 "world_size_changes": self.world_size_changes}, last_path)
                saved_epoch = epoch + 1
            if world_size() > 1:
                dist.barrier()

        if writer is not None:
            writer.close()
        if stop_epoch < cfg.SOLVER.EPOCHS:
            self.logger.info(f"stopped after epoch {stop_epoch} (SOLVER.STOP_EPOCH); continue with --resume")
            return None
        return self.finish(best_epoch, best_top1, test_selected)

    def _finish_untrained(self) -> dict:
        """SOLVER.EPOCHS 0: the model as ``method.prepare`` left it is the result (epoch 0)."""
        if is_main_process():  # analyze reads the run's config
            atomic_write_text(os.path.join(self.output_dir, "config.yaml"), self.cfg.dump())
        split = self.selection_split
        result = self.evaluate(split)
        self._log_eval(None, 0, split, result)
        if is_main_process():
            atomic_save({"model": self.model.state_dict(), "epoch": 0, split: result},
                        os.path.join(self.output_dir, BEST_CHECKPOINT))
        if world_size() > 1:
            dist.barrier()
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
            self._log_eval(None, best_epoch, "test", test_result)
        results = self._results(test_result, best_epoch, best_top1, test_selected)
        if is_main_process():
            atomic_save(deploy_state_dict(self.model), os.path.join(self.output_dir, DEPLOY_WEIGHTS))
            atomic_write_text(os.path.join(self.output_dir, "results.json"), strict_json_dumps(results, indent=2))
            self.logger.info(f"results: {json.dumps(results)}")
        return results
