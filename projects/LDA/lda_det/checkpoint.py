"""DetectionCheckpointer that writes atomically: a crash never leaves a half-written file.

Loading is DetectionCheckpointer's (our checkpoints, detectron2's ImageNet .pkl
backbones, model-zoo .pkl / .pth files); a plain Mask R-CNN's (C+1)-way classifier
is converted by LDAOutputLayers when its state dict is loaded.
"""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer


def _atomic_write(path: str, write) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    def save(self, name: str, **kwargs) -> None:
        """As fvcore's Checkpointer.save, but through a temporary file and os.replace."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        os.makedirs(self.save_dir, exist_ok=True)
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self.save_to_disk:
            return
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                      lambda f: f.write(last_filename_basename.encode()))
