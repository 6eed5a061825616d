"""Reading the files lda_cls writes (checkpoints, weights), with errors that name the file."""
import torch

__all__ = ["load_checkpoint"]


def load_checkpoint(path: str, map_location="cpu"):
    """``torch.load`` of ``path``; a file torch cannot read is a ValueError naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # UnpicklingError, EOFError, zip errors...: the file is what the user needs
        raise ValueError(f"cannot read checkpoint {path} (corrupt or not a torch file): "
                         f"{type(error).__name__}: {error}") from error
