"""Analysis of trained runs, for classification and detection alike: the paper's figures (Fig. 1, 4, 6b).

Framework-free (numpy, torch tensors, matplotlib's Agg canvas): ``python -m lda_cls.analyze`` turns a
classification run into ``RunData`` and calls ``pipeline.analyze_runs``; projects/LDA/tools/analyze.py
draws detection runs with the same figures and report. Modules, one concept each:

* ``splits``: the many / medium / few rule (``SplitRule``; LVIS's rare / common / frequent);
* ``metrics``: the quantities (weight norms, per-class accuracy, d_intra / d_inter,
  contrastive domain discrepancy, tail-to-head confusion, t-SNE), pure functions;
* ``history``: alpha and delta acc over training, from ``metrics.jsonl``;
* ``run_data``: ``RunData``, what one run contributes, as plain arrays;
* ``figures``: one matplotlib (Agg) PNG per quantity;
* ``report``: the self-contained ``report.html``;
* ``pipeline``: ``analyze_runs``, runs -> figures, ``analysis.json`` and report.

``figures`` and ``pipeline`` load matplotlib, so they are imported by name
(``from lda_analysis.pipeline import analyze_runs``): training imports ``splits`` and never loads it.
"""
from .history import eval_curve, read_metrics, training_curve
from .run_data import RunData
from .splits import LVIS_SPLITS, SPLITS, STANDARD_SPLITS, SplitRule, class_splits, split_indices

__all__ = ["SPLITS", "SplitRule", "STANDARD_SPLITS", "LVIS_SPLITS", "split_indices", "class_splits", "RunData",
           "read_metrics", "training_curve", "eval_curve"]
