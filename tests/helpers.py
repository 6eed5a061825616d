"""What several test files need and pytest does not give: a free TCP port, a script loaded as a module,
commands run side by side (the machines of a multi-machine launch), weights compared tensor by tensor,
detectron2 workers on several gloo ranks.

Imported as ``from tests.helpers import free_port, load_script`` (the repository root is on sys.path:
tests/ is a package, and pytest runs from the root).
"""
import importlib.util
import os
import socket
import subprocess
from typing import Mapping, Sequence
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A TCP port nobody listens on now, for a process group's rendezvous (parallel sessions do not collide)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_script(path: str, name: str) -> ModuleType:
    """The script at ``path`` (relative to the repository root, or absolute) imported as module ``name``:
    train_net.py, tools/*.py and benchmarks/*.py are scripts, not part of a package."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_side_by_side(commands: Sequence[Sequence[str]], env: Mapping[str, str], timeout: float = 600) -> None:
    """Start every command at once (each one machine of a launch: they rendezvous with each other) and wait;
    fails with a command's output tail if any exits non-zero."""
    processes = [subprocess.Popen(list(command), cwd=REPO, env=dict(env), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for command in commands]
    outputs = [process.communicate(timeout=timeout)[0] for process in processes]
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"command {index} exited {process.returncode}:\n{output[-3000:]}"


def assert_same_weights(weights: Mapping, reference: Mapping, atol: float) -> None:
    """The same parameter names, every tensor equal to ``atol`` (no relative slack)."""
    import torch

    assert set(weights) == set(reference)
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=0, atol=atol, msg=name)


def _run_and_finish(worker, *args) -> None:
    from detectron2.utils import comm
    import torch.distributed as dist

    worker(*args)
    # detectron2's launch leaves the process group alive at exit, and gloo's teardown then aborted a rank
    # ("terminate called without an active exception", SIGABRT) now and then in CI: end it on every rank.
    comm.synchronize()
    dist.destroy_process_group()


def launch_on_ranks(worker, num_processes: int, *args) -> None:
    """``worker(*args)`` on ``num_processes`` CPU ranks (detectron2's launch: gloo), on a free port; the
    process group is destroyed after a barrier when the worker returns. ``worker`` must be importable."""
    from detectron2.engine import launch

    launch(_run_and_finish, num_processes, dist_url=f"tcp://127.0.0.1:{free_port()}", args=(worker, *args))
