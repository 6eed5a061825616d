"""DetectionCheckpointer that writes atomically: a crash never leaves a half-written file.

Loading is DetectionCheckpointer's (our checkpoints, detectron2's ImageNet .pkl
backbones, model-zoo .pkl / .pth files); a plain Mask R-CNN's (C+1)-way classifier
is converted by LDAOutputLayers when its state dict is loaded. A ``.pth`` is read with
``weights_only=True`` (lda_common.checkpoint_io): a crafted one is refused in one line naming it, and runs
nothing. A ``.pkl`` is a pickle by design (detectron2 reads it with pickle.load): load .pkl files from
trusted sources only.

``HeadCheckingCheckpointer`` (--eval-only, model_zoo.get) refuses weights whose box predictor is
another head's (e.g. EQLv2 weights under StandardROIHeads): loading them would drop that head's
layers and statistics with a warning, and evaluate a model that is neither.
"""
import contextlib
import re
from typing import Iterable, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer

from lda_common.atomic_files import atomic_path
from lda_common.checkpoint_io import load_checkpoint

PLAIN_HEAD = "StandardROIHeads"
# (head, box-predictor entries no other head of this project has), in the order they are tested:
# LDA's class_counts buffer has Seesaw's name, so LDA's own classifiers are looked for first.
HEAD_SIGNATURES = (
    ("LDAROIHeads", ("balanced_score.weight", "unbalanced_score.weight")),
    ("EQLv2ROIHeads", ("pos_grad", "neg_grad", "pos_neg")),
    ("EQLROIHeads", ("image_counts", "num_images")),
    ("SeesawROIHeads", ("class_counts",)),
)
SAME_PREDICTOR = {"LDARes5ROIHeads": "LDAROIHeads"}  # C4 variant, the same box predictor


def box_predictor_head(keys: Iterable[str]) -> Optional[str]:
    """The ROI head whose box predictor a state dict's keys hold (None: no box predictor in them)."""
    entries = {re.sub(r"^\d+\.", "", key.rsplit("box_predictor.", 1)[1]) for key in keys if "box_predictor." in key}
    if not entries:
        return None
    for head, signature in HEAD_SIGNATURES:
        if entries & set(signature):
            return head
    return PLAIN_HEAD if "cls_score.weight" in entries else None


def check_box_predictor(model: torch.nn.Module, state_keys: Iterable[str], source: str) -> None:
    """ValueError naming both heads when ``state_keys`` hold another head's box predictor than ``model``'s.

    Allowed besides the same head: a plain Fast R-CNN predictor, whose (C+1)-way classifier the LDA
    head converts and whose missing statistics EvalCheckpointer names for the other heads."""
    theirs = box_predictor_head(state_keys)
    built = type(getattr(model, "roi_heads", None)).__name__
    ours = box_predictor_head(model.state_dict().keys())
    if theirs is None or ours is None or theirs == PLAIN_HEAD or theirs == SAME_PREDICTOR.get(built, ours):
        return
    raise ValueError(f"{source} holds the box predictor of {theirs}, but the model is built with {built} "
                     f"(MODEL.ROI_HEADS.NAME): set MODEL.ROI_HEADS.NAME {theirs} to evaluate them, or pass weights "
                     f"of a {built} model")


class AtomicPathManager:
    """A PathManager whose local files opened for writing are written under a temporary name and renamed over
    their path when closed (lda_common.atomic_files.atomic_path); everything else is the wrapped one's.

    fvcore's Checkpointer.save and tag_last_checkpoint write through ``self.path_manager.open`` in a
    ``with`` block, so with this one they stay fvcore's own and still never leave a half-written file.
    URIs ("scheme://...") go to their handler unchanged: os.replace means nothing to a remote store."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name):
        return getattr(self._path_manager, name)

    @contextlib.contextmanager
    def open(self, path: str, mode: str = "r", **kwargs):
        if "w" not in mode or "://" in path:
            with self._path_manager.open(path, mode, **kwargs) as handle:
                yield handle
            return
        with atomic_path(path) as tmp, self._path_manager.open(tmp, mode, **kwargs) as handle:
            yield handle


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose checkpoints and last_checkpoint tag are written atomically."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path_manager = AtomicPathManager(self.path_manager)

    def save(self, name: str, **kwargs) -> None:
        if self.save_dir and self.save_to_disk:
            self.path_manager.mkdirs(self.save_dir)  # fvcore's save expects the directory to exist
        super().save(name, **kwargs)

    def _torch_load(self, filename: str):
        # weights_only loading (lda_common.checkpoint_io): a .pth from elsewhere cannot run code.
        return load_checkpoint(self.path_manager.get_local_path(filename))


class HeadCheckingCheckpointer(AtomicDetectionCheckpointer):
    """Refuses weights of another ROI head (check_box_predictor) before anything is loaded."""

    def load(self, path: str, *args, **kwargs):
        self._loading = path  # named in the error
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        check_box_predictor(self.model, checkpoint.get("model", {}).keys(), getattr(self, "_loading", "the weights"))
        return super()._load_model(checkpoint)
