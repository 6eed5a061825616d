"""Two processes on the gloo backend (launch picks it without a GPU) train the LDA head."""
import math
import socket

import torch
from detectron2.engine import launch

from .dist_worker import train_a_few_iterations


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_training(synthetic_root, tmp_path):
    prefix = str(tmp_path / "run")
    launch(train_a_few_iterations, 2, dist_url=f"tcp://127.0.0.1:{_free_port()}", args=(prefix, 3))
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
