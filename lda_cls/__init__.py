"""lda_cls: long-tailed image classification with LDA (Peng et al., ACM MM 2021).

Public API (used by the training CLI and by analysis tools):

* ``get_cfg()`` / ``add_lda_cls_config(cfg)``: the config (lda_cls/config.py).
* ``build_model(cfg, num_classes) -> LongTailClassifier``: timm backbone + LDAHead with the head layout of
  ``cfg.METHOD`` (``lda_cls.models.build_model(cfg, num_classes, head_layout)`` takes the layout itself).
  ``model(images)`` returns a dict: "logits" = h(x) (the test-time classifier; the
  single classifier with METHOD ce), "unbalanced_logits" = h'(x) (LDA only),
  "features" = pooled backbone feature, "projection" = p(x) (LDA with projection).
  Head submodules: ``model.head.balanced`` (h), ``model.head.unbalanced`` (h'),
  ``model.head.projection`` (p), all nn.Linear (None when absent).
* ``build_datasets(cfg, load_images=True) -> (train_set, test_set, class_counts)``:
  training set, reported test set, per-class training counts n_y (list of int).
  ``build_dataset(cfg, split)`` -> (dataset, num_classes) for "train" / "val" / "test"
  (dataset None for "val" where the data has no validation split).
  Datasets yield (uint8 CHW tensor, label); ``BatchPreprocess`` normalises batches.
* ``deploy_state_dict(model)``: backbone + h weights only.
* ``Trainer`` (lda_cls/engine.py), ``evaluate`` / ``split_accuracy`` (lda_cls/evaluation.py).

* ``lda_cls.methods``: the compared methods by name (``cfg.METHOD``; configs/cls/methods/<name>.yaml),
  ``lda_cls.samplers`` and ``lda_cls.hooks``: training samplers and epoch hooks by name / config.

Command lines: ``python -m lda_cls.train``, ``python -m lda_cls.stats`` and ``python -m lda_cls.analyze``.
"""
from . import models  # noqa: F401  registers resnet{8,20,32}_cifar with timm (side effect)
from .config import add_lda_cls_config, get_cfg
from .data import BatchPreprocess, build_dataset, build_datasets
from .evaluation import evaluate, split_accuracy
from .methods import build_method_model as build_model  # the method-aware builder: models know no methods
from .models import LDAHead, LongTailClassifier, deploy_state_dict

__all__ = ["add_lda_cls_config", "get_cfg", "BatchPreprocess", "build_dataset", "build_datasets", "evaluate",
           "split_accuracy", "LDAHead", "LongTailClassifier", "build_model", "deploy_state_dict", "Trainer"]


def __getattr__(name):
    # The trainer pulls in tensorboard and tqdm; load it only when asked for.
    if name == "Trainer":
        from .engine import Trainer

        return Trainer
    raise AttributeError(f"module 'lda_cls' has no attribute {name!r}")
