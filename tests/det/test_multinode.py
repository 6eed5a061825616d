"""train_net.py as 2 machines x 1 process (--num-machines 2 --machine-rank 0/1 --dist-url tcp://127.0.0.1:PORT,
gloo on CPU) trains exactly as --num-gpus 2 on one machine: same ranks, data shards, gradients, final weights.

On CPU detectron2's launch spawns gloo workers by itself; the trainer's DDP goes without device_ids
(lda_det.cpu_ddp). Each run: the tiny demo model, 3 iterations, no test set (evaluation is tested elsewhere).
"""
import os
import sys

import torch

from lda_det import model_zoo

from ..helpers import REPO, assert_same_weights, free_port, run_side_by_side
from .conftest import DEMO_CONFIG, tiny_opts

TRAIN_NET = os.path.join(REPO, "projects", "LDA", "train_net.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "projects", "LDA")]))


def _command(output, *launch):
    # SEED: default_setup seeds rank r with SEED + r, so both runs draw the same shared sampler seed on rank 0.
    return [sys.executable, TRAIN_NET, "--config-file", model_zoo.get_config_file(DEMO_CONFIG), *launch,
            *tiny_opts(output), "SEED", "0", "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1000"]


def _final_weights(output):
    return torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]


def test_two_machines_of_one_process_equal_two_processes_on_one_machine(synthetic_root, tmp_path):
    one_machine = tmp_path / "one_machine"
    run_side_by_side([_command(one_machine, "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}")], ENV)

    # What a cluster runs on each machine; one (shared) OUTPUT_DIR, rank 0 writes the checkpoints.
    two_machines = tmp_path / "two_machines"
    url = f"tcp://127.0.0.1:{free_port()}"
    run_side_by_side([_command(two_machines, "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank),
                               "--dist-url", url) for rank in (0, 1)], ENV)
    assert_same_weights(_final_weights(two_machines), _final_weights(one_machine), atol=1e-6)
    checkpoint = torch.load(two_machines / "model_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["iteration"] == 2  # the last of 3 iterations (0, 1, 2)
    # Machine 1's process was rank 1 of 2: it logged next to rank 0 in the shared OUTPUT_DIR.
    assert (two_machines / "log.txt.rank1").is_file()
