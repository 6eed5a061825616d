"""A classification run directory -> ``RunData`` (``collect_run``: its checkpoint and forward passes).

The rest of the analysis (metrics, figures, report, history) is framework-free and shared with the
detection project: the top-level package ``lda_analysis``. ``python -m lda_cls.analyze`` joins the two.
"""
from .collect import FEATURE_KINDS, collect_run

__all__ = ["FEATURE_KINDS", "collect_run"]
