"""A 2-process torchrun training step of lda_cls gives one process's gradients on the global batch."""
import os
import subprocess
import sys

import torch

WORKER = os.path.join(os.path.dirname(__file__), "ddp_step_worker.py")


def run_worker(out_path, nproc):
    prefix = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                   "--standalone", "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(prefix + [WORKER, str(out_path)], check=True, env=env, timeout=300)
    return torch.load(out_path)


def test_torchrun_step_equals_one_process_on_the_whole_batch(tmp_path):
    single = run_worker(tmp_path / "single.pt", 1)
    ddp = run_worker(tmp_path / "ddp.pt", 2)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert single["alpha"] == ddp["alpha"] == 5.0
    assert set(ddp["grads"]) == set(single["grads"])
    for name, reference in single["grads"].items():
        difference = (ddp["grads"][name] - reference).norm() / reference.norm().clamp(min=1e-30)
        assert difference < 1e-10, name
