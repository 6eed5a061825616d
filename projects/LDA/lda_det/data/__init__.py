from . import synthetic_lt
from .datasets import SYNTHETIC_LT_SPLITS, ensure_available, register_lvis_format, register_synthetic_lt

register_synthetic_lt()  # registers "synthetic_lt_train" / "synthetic_lt_val" (generated lazily)

__all__ = [
    "SYNTHETIC_LT_SPLITS", "ensure_available", "register_lvis_format", "register_synthetic_lt", "synthetic_lt",
]
