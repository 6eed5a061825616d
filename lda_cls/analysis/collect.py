"""A run directory of ``python -m lda_cls.train`` -> :class:`RunData`.

Reads ``config.yaml``, ``metrics.jsonl``, ``results.json`` and a checkpoint
(``model_best.pth``, the one ``results.json`` reports, else
``last_checkpoint.pth``), rebuilds the model with ``lda_cls.build_model`` and the
datasets with ``lda_cls.build_dataset``, and runs the model over the balanced test
set and over a per-class subsample of the training set, both with the test-time
transform. The arrays are cached in ``<out>/features/<run>.npz`` and reused while
the checkpoint and the options are unchanged.
"""
import json
import logging
import os
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from lda_analysis.history import read_metrics
from lda_analysis.metrics import samples_per_class, subsample_per_class
from lda_analysis.run_data import RunData
from lda_analysis.splits import SplitRule
from lda_cls.inference import forward_over
from lda_cls.models import load_model_weights
from lda_cls.precision import autocast_dtype_for
from lda_common.checkpoint_io import load_checkpoint

logger = logging.getLogger(__name__)

CHECKPOINTS = ("model_best.pth", "last_checkpoint.pth", "model_deploy.pth")
FEATURE_KINDS = ("features", "projection")


def load_run_config(run_dir: str, overrides=()):
    """The run's resolved config (``config.yaml``), with KEY VALUE ``overrides`` (e.g. DATASET.ROOT)."""
    from lda_cls import get_cfg

    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir} is not an lda_cls run directory: {path} is missing")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(path)
    except KeyError as error:
        if _is_detectron2_config(path):
            raise ValueError(f"{run_dir} is a detection run (train_net.py): lda_cls.analyze reads classification "
                             f"runs; use python projects/LDA/tools/analyze.py {run_dir}") from None
        raise ValueError(f"{path}: {error.args[0]}") from None
    overrides = list(overrides)
    if len(overrides) % 2:
        raise ValueError(f"overrides must be KEY VALUE pairs, got {overrides}")
    try:
        cfg.merge_from_list(overrides)
    except (KeyError, AssertionError, ValueError) as error:  # yacs asserts on unknown keys
        raise ValueError(f"bad config override {overrides}: {error}") from None
    return cfg


def _is_detectron2_config(path: str) -> bool:
    import yaml

    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    return isinstance(loaded, dict) and "META_ARCHITECTURE" in (loaded.get("MODEL") or {})


def find_checkpoint(run_dir: str, weights: Optional[str] = None) -> str:
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file not found: {weights}")
        return weights
    for name in CHECKPOINTS:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no checkpoint in {run_dir}: looked for {', '.join(CHECKPOINTS)}")


def load_model(cfg, num_classes: int, checkpoint: str, device: torch.device):
    """``lda_cls.build_model`` with the checkpoint's weights; deploy weights (backbone + h) drop h' and p."""
    from lda_cls import build_model

    model = build_model(cfg, num_classes)
    load_model_weights(model, checkpoint)
    return model.to(device).eval()


def class_names_of(cfg, num_classes: int):
    """Folder names of an image-folder training tree (sorted, as the datasets label them), else indices."""
    directory = os.path.join(cfg.DATASET.ROOT, cfg.DATASET.TRAIN_DIR) if cfg.DATASET.ROOT else ""
    if directory and os.path.isdir(directory):
        names = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        if len(names) == num_classes:
            return names
    return [str(index) for index in range(num_classes)]


@torch.no_grad()
def forward_dataset(model, dataset, preprocess, device: torch.device, batch_size: int, feature: str,
                    description: str, autocast_dtype: Optional[torch.dtype] = None):
    """(targets, argmax of h, argmax of h' or None, features) over a dataset, in dataset order.

    ``autocast_dtype``: the precision the run was evaluated in (its SOLVER.AMP on this device), so that
    the predictions are the ones its results.json counted."""
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    batches = tqdm(loader, desc=description, leave=False, dynamic_ncols=True)
    outputs = forward_over(model, batches, preprocess, device, autocast_dtype,
                           keys=("logits", "unbalanced_logits", feature))
    if feature not in outputs:
        raise ValueError(f"the model gives no '{feature}' output (projection head disabled?); use --feature features")
    unbalanced = outputs.get("unbalanced_logits")
    return (outputs["targets"].cpu().numpy(), outputs["logits"].argmax(1).cpu().numpy(),
            None if unbalanced is None else unbalanced.argmax(1).cpu().numpy(), outputs[feature].cpu().numpy())


def _read_optional_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None


def collect_run(run_dir: str, cache_dir: Optional[str] = None, weights: Optional[str] = None,
                feature: str = "features", train_per_class: Optional[int] = None, seed: int = 0,
                overrides=(), device: Optional[str] = None) -> RunData:
    """Everything the figures need from one run directory (see the module docstring)."""
    from lda_cls.data import BatchPreprocess, TensorImageDataset, build_dataset, build_file_transform

    if feature not in FEATURE_KINDS:
        raise ValueError(f"feature must be one of {FEATURE_KINDS}, got {feature!r}")
    run_dir = os.path.normpath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    name = os.path.basename(run_dir)
    cfg = load_run_config(run_dir, overrides)
    # The run's own many / medium / few thresholds, so the splits match its results.json.
    split_rule = SplitRule(many_above=int(cfg.TEST.MANY_THRESHOLD), few_below=int(cfg.TEST.FEW_THRESHOLD))
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    records = read_metrics(metrics_path) if os.path.isfile(metrics_path) else []
    results = _read_optional_json(os.path.join(run_dir, "results.json"))
    checkpoint = find_checkpoint(run_dir, weights)

    source = {"checkpoint": os.path.abspath(checkpoint), "amp": cfg.SOLVER.AMP, "mtime": os.path.getmtime(checkpoint), "feature": feature,
              "train_per_class": train_per_class, "seed": int(seed), "overrides": list(overrides)}
    cache = os.path.join(cache_dir, f"{name}.npz") if cache_dir else None
    if cache and os.path.isfile(cache):
        cached = RunData.load(cache, records=records, results=results)
        if cached.source == source:
            logger.info(f"{name}: reusing the forward passes cached in {cache}")
            cached.split_rule = split_rule
            return cached

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autocast_dtype, _ = autocast_dtype_for(cfg.SOLVER.AMP, device)
    train_set, num_classes = build_dataset(cfg, "train")
    test_set, _ = build_dataset(cfg, "test")
    class_counts = np.bincount(np.asarray(train_set.targets, dtype=np.int64), minlength=num_classes)
    model = load_model(cfg, num_classes, checkpoint, device)
    in_memory = isinstance(train_set, TensorImageDataset)
    preprocess = BatchPreprocess.from_config(cfg, train=False, in_memory=in_memory).to(device)
    if not in_memory and hasattr(train_set, "transform"):
        train_set.transform = build_file_transform(cfg, train=False)  # features without augmentation

    batch_size = int(cfg.TEST.BATCH_SIZE)
    test_targets, test_predictions, test_unbalanced, test_features = forward_dataset(
        model, test_set, preprocess, device, batch_size, feature, f"{name}: test set", autocast_dtype)
    # Only the training images CDD will use: the same per-class cap as the pipeline's.
    keep = subsample_per_class(train_set.targets, samples_per_class(num_classes, train_per_class), seed)
    train_targets, _, _, train_features = forward_dataset(
        model, Subset(train_set, keep.tolist()), preprocess, device, batch_size, feature,
        f"{name}: training subsample", autocast_dtype)

    from lda_cls.models.classifiers import effective_weight

    head = model.head
    # The class vectors the method predicts with: tau-normalised, LWS-scaled, NCM means, ... (not the raw weight).
    classifiers = {"h": effective_weight(head.balanced).detach().cpu().numpy()}
    if head.unbalanced is not None:
        classifiers["h'"] = head.unbalanced.weight.detach().cpu().numpy()
    run = RunData(name=name, method=cfg.METHOD, class_counts=class_counts,
                  class_names=class_names_of(cfg, num_classes), classifiers=classifiers,
                  test_targets=test_targets, test_predictions=test_predictions, test_features=test_features,
                  train_targets=train_targets, train_features=train_features,
                  test_unbalanced_predictions=test_unbalanced, records=records, results=results, source=source,
                  split_rule=split_rule)
    if cache:
        os.makedirs(cache_dir, exist_ok=True)
        run.save(cache)
    return run
