"""lda_cls as 2 nodes x 1 process (two torchrun agents on localhost, static rendezvous, gloo) trains exactly
as 2 processes on one node: same ranks, same data shards, same all-reduced gradients, same final weights."""
import os
import subprocess
import sys

import torch

from tests.helpers import REPO, free_port

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
    proc = subprocess.run(_torchrun(one_node, ["--nproc-per-node", "2", "--master-port", str(free_port())]),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # What a cluster runs on each of its nodes; both write to one (shared) output directory, rank 0 alone writes.
    two_nodes = tmp_path / "two_nodes"
    port = str(free_port())
    nodes = [subprocess.Popen(_torchrun(two_nodes, ["--nnodes", "2", "--nproc-per-node", "1", "--node-rank",
                                                    str(node), "--master-addr", "127.0.0.1", "--master-port", port]),
                              cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for node in (0, 1)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]

    reference, weights = _final_weights(one_node), _final_weights(two_nodes)
    assert set(weights) == set(reference)
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=1e-7, msg=name)
    checkpoint = torch.load(two_nodes / "last_checkpoint.pth", map_location="cpu", weights_only=False)
    assert checkpoint["iteration"] == 3  # 3 steps of 2 x 64 images
