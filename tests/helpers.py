"""What several test files need and pytest does not give: a free TCP port, a script loaded as a module.

Imported as ``from tests.helpers import free_port, load_script`` (the repository root is on sys.path:
tests/ is a package, and pytest runs from the root).
"""
import importlib.util
import os
import socket
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
