"""Analysis of trained runs: the paper's figures (Fig. 1, 4, 6b) for your own checkpoints.

``python -m lda_cls.analyze RUN_DIR [--compare OTHER_RUN_DIR ...] [--out DIR]`` is the
entry point. Modules, one concept each:

* ``metrics``: the quantities (weight norms, per-class accuracy, d_intra / d_inter,
  contrastive domain discrepancy, tail-to-head confusion, t-SNE), pure functions;
* ``history``: alpha and delta acc over training, from ``metrics.jsonl``;
* ``run_data``: ``RunData``, what one run contributes, as plain arrays;
* ``collect``: ``collect_run``, a run directory -> ``RunData`` (checkpoint + forward passes);
* ``figures``: one matplotlib (Agg) PNG per quantity;
* ``report``: the self-contained ``report.html``;
* ``pipeline``: ``analyze_runs``, runs -> figures, ``analysis.json`` and report.
"""
from .history import eval_curve, read_metrics, training_curve
from .pipeline import analyze_runs, compute_quantities
from .run_data import RunData

__all__ = ["RunData", "analyze_runs", "compute_quantities", "read_metrics", "training_curve", "eval_curve"]
