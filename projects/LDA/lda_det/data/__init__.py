from . import lvis_v1_counts, synthetic_lt, synthetic_lvis_profile
from .datasets import (SYNTHETIC_DATASETS, SYNTHETIC_LT_SPLITS, ensure_available, register_lvis_format,
                       register_synthetic_lt, register_synthetic_lvis_profile)

# Generated lazily, on first use: "synthetic_lt_{train,val}" and "synthetic_lvis_profile_{train,val}".
register_synthetic_lt()
register_synthetic_lvis_profile()

__all__ = [
    "SYNTHETIC_DATASETS", "SYNTHETIC_LT_SPLITS", "ensure_available", "lvis_v1_counts", "register_lvis_format",
    "register_synthetic_lt", "register_synthetic_lvis_profile", "synthetic_lt", "synthetic_lvis_profile",
]
