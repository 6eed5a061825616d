"""The compared long-tailed methods, one module per family, each registering its classes by name.

    ce.py            ce, rw, ce_drw, ce_drs, focal, cb_focal
    ldam.py          ldam, ldam_drw
    logit_adjust.py  balanced_softmax, logit_adjusted, posthoc_la
    lda.py           lda, lda_em_only, lda_em_dm, lda_fixed_alpha, lda_h_prime_only
    decoupling.py    crt, lws, tau_norm, ncm

``cfg.METHOD`` picks one; configs/cls/methods/<name>.yaml holds what it changes in the dataset
config. Adding a method: a registered class (lda_cls/methods/base.py) and its YAML.
"""
from . import ce, decoupling, lda, ldam, logit_adjust  # noqa: F401  register the methods (side effect)
from .base import METHODS, Method, build_method, build_method_model, method_class, register_method

__all__ = ["METHODS", "Method", "build_method", "build_method_model", "method_class", "register_method"]
