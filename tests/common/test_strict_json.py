"""lda_common.strict_json: what a strict JSON parser reads back, NaN as null and numpy as plain values."""
import json

import numpy as np
import pytest

from lda_common.strict_json import json_safe, strict_json_dumps


def _refuse(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def test_nan_and_inf_anywhere_become_null():
    value = {"top1": float("nan"), "splits": [1.0, (float("-inf"), 2.0)], "nested": {"few": float("inf")}}
    text = strict_json_dumps(value)
    assert json.loads(text, parse_constant=_refuse) == {"top1": None, "splits": [1.0, [None, 2.0]],
                                                       "nested": {"few": None}}


def test_numpy_arrays_scalars_and_keys_become_plain_json():
    value = {np.int64(3): np.array([[1, 2], [3, 4]], dtype=np.int32), "flag": np.bool_(True),
             "norm": np.float64("nan"), "mean": np.float32(0.25)}
    assert json_safe(value) == {"3": [[1, 2], [3, 4]], "flag": True, "norm": None, "mean": 0.25}
    assert json.loads(strict_json_dumps(value), parse_constant=_refuse)["norm"] is None


def test_what_json_cannot_write_is_still_an_error():
    with pytest.raises(TypeError):
        strict_json_dumps({"weights": object()})
