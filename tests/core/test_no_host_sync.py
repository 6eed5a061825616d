"""The loss step never reads a device value on the host and does not loop over classes.

On a GPU, `.item()`, `bool(tensor)`, `.tolist()`, `torch.unique` and boolean-mask
indexing all synchronise with the host. They show up in PyTorch's dispatcher as
the ops of tests/dispatched_ops.py, so recording the dispatched ops on the CPU finds them without a GPU.
"""
import pytest
import torch

import lda_core.loss
from lda_core import LDALoss

from ..dispatched_ops import SYNCING_OPS, RecordOps


def record_training_step(targets, monkeypatch, num_classes=50, scaling="official", valid=None):
    # The target range check is the one host read on the CPU path; on CUDA it is an
    # asynchronous device assert instead. It is validated in test_edge_cases.
    monkeypatch.setattr(lda_core.loss, "_check_target_range", lambda targets, num_classes: None)
    criterion = LDALoss(torch.arange(num_classes, 0, -1), window=4, weighted_inter=True, scaling=scaling)
    b = targets.shape[0]
    unbalanced = torch.randn(b, num_classes, requires_grad=True)
    balanced = torch.randn(b, num_classes, requires_grad=True)
    features = torch.randn(b, 16, requires_grad=True)
    with RecordOps() as recorder:
        out = criterion(unbalanced, balanced, targets, features, valid=valid)
        out["loss"].backward()
    return recorder.ops


@pytest.mark.parametrize("scaling", ["official", "calibrated"])
@pytest.mark.parametrize("valid", [None, torch.tensor([True, False, True, True, False, True, True, True])])
def test_training_step_dispatches_no_syncing_op(monkeypatch, scaling, valid):
    ops = record_training_step(torch.tensor([0, 0, 3, 7, 7, 7, 12, 49]), monkeypatch, scaling=scaling, valid=valid)
    assert not [op for op in ops if any(s in op for s in SYNCING_OPS)]


def test_number_of_ops_does_not_grow_with_classes_in_batch(monkeypatch):
    few_classes = record_training_step(torch.tensor([1, 1, 1, 1, 2, 2, 2, 2]), monkeypatch)
    many_classes = record_training_step(torch.arange(8) * 5, monkeypatch)
    assert len(few_classes) == len(many_classes)
