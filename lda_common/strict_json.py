"""JSON that strict parsers accept: NaN and inf become null, numpy arrays and scalars plain lists and numbers.

Python's json writes a bare ``NaN``, which is not JSON (JavaScript's JSON.parse, jq and most other
languages reject the file). Every JSON file of the project (results.json, metrics.jsonl,
analysis.json, ...) goes through ``strict_json_dumps``.
"""
import json
import math
from typing import Any

import numpy as np

__all__ = ["json_safe", "strict_json_dumps"]


def json_safe(value: Any) -> Any:
    """``value`` with NaN / inf floats as None, numpy arrays as lists, numpy scalars as Python numbers and
    dict keys as strings (json.dumps writes int keys as strings too; numpy keys it refuses)."""
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def strict_json_dumps(value: Any, **kwargs) -> str:
    """json.dumps of ``json_safe(value)``; allow_nan=False makes any NaN that slipped through an error."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)
