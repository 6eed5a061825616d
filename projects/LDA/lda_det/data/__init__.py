from . import lvis_v1_counts, synthetic_lt
from .datasets import (SYNTHETIC_DATASETS, SYNTHETIC_LT_SPLITS, ensure_available, register_lvis_format,
                       register_synthetic_lt)

register_synthetic_lt()  # registers "synthetic_lt_train" / "synthetic_lt_val" (generated lazily)

__all__ = [
    "SYNTHETIC_DATASETS", "SYNTHETIC_LT_SPLITS", "ensure_available", "lvis_v1_counts", "register_lvis_format",
    "register_synthetic_lt", "synthetic_lt",
]
