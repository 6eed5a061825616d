"""Two processes on the gloo backend (launch picks it without a GPU) train the LDA head."""
import math

import torch

from ..helpers import launch_on_ranks
from .dist_worker import (HEAD_SCALINGS, POSITIVES_PER_RANK, head_batch, head_gradients, head_gradients_on_rank,
                          train_a_few_iterations)


def test_two_process_gloo_training(synthetic_root, tmp_path):
    prefix = str(tmp_path / "run")
    launch_on_ranks(train_a_few_iterations, 2, prefix, 3)
    ranks = [torch.load(f"{prefix}.rank{r}.pt") for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    # DDP averaged the gradients: identical weights on both ranks, and they moved.
    for name, value in ranks[0]["params"].items():
        torch.testing.assert_close(ranks[1]["params"][name], value, rtol=0, atol=0, msg=name)
    # LDALoss all-reduces the accuracy counts: the same alpha window on both ranks.
    assert int(ranks[0]["window"]["num_updates"]) == 3
    for key in ("accuracies", "num_updates"):
        assert torch.equal(ranks[0]["window"][key], ranks[1]["window"][key])
    # detectron2 gathers the losses of all ranks into rank 0's metrics.
    losses = ranks[0]["losses"]
    assert {"loss_fg_bg", "loss_lda", "loss_box_reg", "loss_mask"} <= set(losses)
    assert all(math.isfinite(v) for v in losses.values())


def test_head_gradients_under_ddp_equal_one_process_on_the_whole_batch(tmp_path):
    """2 gloo ranks with uneven positives (9 and 1), gradients averaged as DDP does, against one
    process given both ranks' images: the LDA head's loss is one over the global batch."""
    prefix = str(tmp_path / "head")
    launch_on_ranks(head_gradients_on_rank, 2, prefix)
    ranks = [torch.load(f"{prefix}.rank{r}.pt") for r in range(2)]
    batches = [head_batch(rank, 2, POSITIVES_PER_RANK[rank]) for rank in range(2)]
    features = torch.cat([features for features, _ in batches])
    proposals = [instances for _, image_proposals in batches for instances in image_proposals]
    for scaling in HEAD_SCALINGS:
        expected = head_gradients(features, proposals, scaling)
        assert set(ranks[0][scaling]) == set(expected)
        for name, grad in expected.items():
            assert grad.abs().sum() > 0, name
            for rank in ranks:
                torch.testing.assert_close(rank[scaling][name], grad, rtol=1e-10, atol=1e-12,
                                           msg=f"{scaling} {name}")
    # Class counts: read by rank 0, broadcast; a failure there is raised on every rank.
    assert ranks[0]["broadcast_counts"] == ranks[1]["broadcast_counts"] == list(range(1, 25))
    for rank in ranks:
        assert "rank 0 could not read the LDA class counts" in rank["error"] and "2 entries" in rank["error"]
