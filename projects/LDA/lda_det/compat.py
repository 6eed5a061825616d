"""Compatibility of lvis==0.5.3 (the LVIS API on PyPI) with numpy >= 1.24."""
import numpy as np

# Aliases of Python builtins deprecated in numpy 1.20 and removed in 1.24.
_REMOVED_NUMPY_ALIASES = {"float": float, "int": int, "bool": bool, "object": object,
                          "complex": complex, "str": str}


def restore_numpy_aliases() -> None:
    """Put back np.float and friends, which lvis 0.5.3's LVISEval still uses (eval.py).

    They were plain aliases of the builtins, so restoring them changes no result.
    Idempotent; aliases that still exist are left alone.
    """
    for name, builtin in _REMOVED_NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, builtin)
