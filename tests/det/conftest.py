"""Shared helpers of the detection tests: tiny configs on the synthetic dataset."""
import pytest
import torch

from lda_det import model_zoo

from ..helpers import load_script

# The test machine has 2 cores shared with other jobs; OpenMP's busy-waiting makes a
# second thread slower, not faster, under that load.
torch.set_num_threads(1)


# The synthetic demo shrunk further: 2 images per batch, 3 iterations, tiny heads. Score threshold 0:
# a 3-iteration model may score every box of an image under the usual 0.05 (it did on one CI machine),
# and tests that compare predictions must not depend on where such scores fall.
TINY_OPTS = [
    "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 3, "SOLVER.STEPS", (2,), "SOLVER.WARMUP_ITERS", 1,
    "SOLVER.BASE_LR", 0.01, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 64, "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
    "MODEL.ROI_MASK_HEAD.CONV_DIM", 16, "MODEL.LDA.PROJECTION_HIDDEN_DIM", 32, "MODEL.LDA.PROJECTION_DIM", 16,
    "DATALOADER.NUM_WORKERS", 0, "TEST.DETECTIONS_PER_IMAGE", 50, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
]
DEMO_CONFIG = "LVIS-LDA/synthetic_lt_demo.yaml"


def tiny_cfg(output_dir=None, head: str = "LDAROIHeads", opts=()):
    cfg = model_zoo.get_config(DEMO_CONFIG)
    cfg.merge_from_list(TINY_OPTS + ["MODEL.ROI_HEADS.NAME", head] + list(opts))
    if output_dir is not None:
        cfg.OUTPUT_DIR = str(output_dir)
    return cfg


def tiny_opts(output_dir, head: str = "LDAROIHeads"):
    """TINY_OPTS as command-line strings, for train_net.py."""
    opts = TINY_OPTS + ["MODEL.ROI_HEADS.NAME", head, "OUTPUT_DIR", str(output_dir)]
    return [str(item) for item in opts]


def load_train_net():
    """projects/LDA/train_net.py as a module (it is a script, not part of the package)."""
    return load_script("projects/LDA/train_net.py", "lda_train_net")


@pytest.fixture(scope="session")
def synthetic_root():
    """The synthetic dataset, generated once into its cache (about 15 s the first time)."""
    from lda_det.data import ensure_available, synthetic_lt
    ensure_available("synthetic_lt_train")
    return synthetic_lt.default_root()


__all__ = ["tiny_cfg", "tiny_opts", "load_train_net", "DEMO_CONFIG"]
