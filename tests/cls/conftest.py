"""Tiny generated data for the lda_cls tests (no downloads, no ../shared/data)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

# Small models on a shared CPU: one thread avoids OpenMP oversubscription stalls.
torch.set_num_threads(1)


def _write_image_tree(root, counts_per_class, size=8, prefix="class"):
    """<root>/<prefix>NN/img_XXX.png with distinct pixel content per class; returns class names."""
    rng = np.random.RandomState(0)
    names = []
    for label, count in enumerate(counts_per_class):
        name = f"{prefix}{label:02d}"
        names.append(name)
        directory = os.path.join(root, name)
        os.makedirs(directory, exist_ok=True)
        for index in range(count):
            pixels = rng.randint(0, 255, (size, size, 3)).astype(np.uint8)
            pixels[..., 0] = label * 20  # the class is readable from the red channel
            Image.fromarray(pixels).save(os.path.join(directory, f"img_{index:03d}.png"))
    return names


@pytest.fixture
def write_image_tree():
    """The tree writer: fn(root, counts_per_class, size=8, prefix="class") -> class names."""
    return _write_image_tree


@pytest.fixture
def image_tree(tmp_path):
    """A CIFAR-10-shaped image-folder tree: 10 classes, 20 train / 3 test images each, 8x8."""
    root = tmp_path / "tree"
    _write_image_tree(str(root / "train"), [20] * 10)
    _write_image_tree(str(root / "test"), [3] * 10)
    return root

