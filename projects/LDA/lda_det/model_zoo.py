"""detectron2.model_zoo's interface for the configs of this project (configs/LVIS-LDA/).

No trained LDA weights are published: ``get(name)`` builds the model with
MODEL.WEIGHTS of the config (ImageNet-pretrained backbones), or with ``weights``
(a path or URL of your own checkpoint, or of a plain Mask R-CNN LVIS checkpoint
whose classifier the LDA head converts on load). Building needs no training data: LVIS v1's
class counts ship with lda_det, and an LDA checkpoint carries its own (lda_det.class_counts).
"""
import logging
import os
from typing import Optional

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model

from .checkpoint import HeadCheckingCheckpointer
from .config import add_lda_config

logger = logging.getLogger(__name__)


def _configs_root() -> str:
    """configs/ (LVIS-LDA/*.yaml under it): package data of an installed lda_det, else a checkout's.

    setup.py maps the repository's configs/ to lda_det/configs/ in the wheel, as
    detectron2 ships its own under detectron2/model_zoo/configs; in a checkout
    (or an editable install) it is configs/ at the top of the repository.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "configs")
    checkout = os.path.join(package, "..", "..", "..", "configs")  # projects/LDA/lda_det/ -> configs/
    return installed if os.path.isdir(installed) else os.path.abspath(checkout)


CONFIGS_ROOT = _configs_root()


def get_config_file(config_path: str) -> str:
    """Absolute path of a config given relative to configs/, e.g. "LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml"."""
    path = os.path.join(CONFIGS_ROOT, config_path)
    if not os.path.isfile(path):
        available = sorted(os.listdir(os.path.join(CONFIGS_ROOT, "LVIS-LDA"))) if os.path.isdir(
            os.path.join(CONFIGS_ROOT, "LVIS-LDA")) else []
        raise RuntimeError(f"{config_path} not available in the LDA model zoo ({path} does not exist); "
                           f"configs in LVIS-LDA/: {available}")
    return path


def get_config(config_path: str) -> CfgNode:
    """detectron2's default config + MODEL.LDA.* + the named file."""
    cfg = get_cfg()
    add_lda_config(cfg)
    cfg.merge_from_file(get_config_file(config_path))
    return cfg


def get(config_path: str, weights: Optional[str] = None, device: Optional[str] = None) -> torch.nn.Module:
    """Build the model of a config, in eval mode, with weights loaded by DetectionCheckpointer (weights of
    another ROI head than the config's are refused: lda_det.checkpoint.check_box_predictor).

    Args:
        config_path: relative to configs/, e.g. "LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml".
        weights: path or URL (detectron2://, https://) overriding MODEL.WEIGHTS.
        device: "cpu" / "cuda"; by default cuda if available.
    """
    cfg = get_config(config_path)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg)
    HeadCheckingCheckpointer(model).load(cfg.MODEL.WEIGHTS)  # refuses another head's weights, naming it
    return model.eval()
