"""lda_cls as 2 nodes x 1 process (two torchrun agents on localhost, static rendezvous, gloo) trains exactly
as 2 processes on one node: same ranks, same data shards, same all-reduced gradients, same final weights."""
import os
import sys

import torch

from tests.helpers import REPO, assert_same_weights, free_port, run_side_by_side

# 421 digits images, 64 per rank and step: 3 steps of one epoch (a few seconds of training per run).
FEW_STEPS = ["SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "128", "SOLVER.WARMUP_EPOCHS", "0", "LOG_PERIOD", "1",
             "NUM_THREADS", "1"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _torchrun(output, launcher):
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "lda_cls.train",
            "--output-dir", str(output), *FEW_STEPS]


def _final_weights(output):
    return torch.load(output / "last_checkpoint.pth", map_location="cpu", weights_only=False)["model"]


def test_two_nodes_of_one_process_equal_two_processes_on_one_node(tmp_path):
    one_node = tmp_path / "one_node"
    run_side_by_side([_torchrun(one_node, ["--nproc-per-node", "2", "--master-port", str(free_port())])], ENV)

    # What a cluster runs on each of its nodes; both write to one (shared) output directory, rank 0 alone writes.
    two_nodes = tmp_path / "two_nodes"
    port = str(free_port())
    run_side_by_side([_torchrun(two_nodes, ["--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                                            "--master-addr", "127.0.0.1", "--master-port", port])
                      for node in (0, 1)], ENV)
    assert_same_weights(_final_weights(two_nodes), _final_weights(one_node), atol=1e-7)
    checkpoint = torch.load(two_nodes / "last_checkpoint.pth", map_location="cpu", weights_only=False)
    assert checkpoint["iteration"] == 3  # 3 steps of 2 x 64 images
