#!/usr/bin/env python
"""Convert a torchvision-layout ResNet / ResNeXt state dict into a detectron2 backbone .pkl.

detectron2 publishes no ImageNet ResNeXt-101 32x4d (configs/LVIS-LDA/*X_101_32x4d*.yaml);
torchvision-layout weights (torchvision itself, or timm's resnext101_32x4d, whose keys
follow torchvision's) convert with:

    python projects/LDA/tools/convert_torchvision_to_d2.py resnext101_32x4d.pth X-101-32x4d-torchvision.pkl

The output is read by DetectionCheckpointer with its name-matching heuristics, as
detectron2's ImageNet .pkl files are. Such weights expect RGB input normalised with
ImageNet's mean / std and STRIDE_IN_1X1 False, as the X-101-32x4d configs set.
"""
import argparse
import pickle

from lda_common.atomic_files import atomic_write_bytes
from lda_common.checkpoint_io import load_checkpoint
from lda_common.cli import add_debug_flag, run_cli


def torchvision_to_d2(state_dict):
    """Rename torchvision ResNet keys to detectron2's (drops the classifier "fc.*")."""
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        new_key = key if "layer" in key else "stem." + key
        for stage in (1, 2, 3, 4):
            new_key = new_key.replace(f"layer{stage}", f"res{stage + 1}")
        for index in (1, 2, 3):
            new_key = new_key.replace(f"bn{index}", f"conv{index}.norm")
        new_key = new_key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        converted[new_key] = value.detach().cpu().numpy()
    return {"model": converted, "__author__": "torchvision", "matching_heuristics": True}


def load_state_dict(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    state = load_checkpoint(path)  # weights_only: the file runs no code
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="torchvision-layout state dict (.pth / .safetensors)")
    parser.add_argument("output", help="detectron2 .pkl to write")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    data = torchvision_to_d2(load_state_dict(args.input))
    atomic_write_bytes(args.output, pickle.dumps(data))  # a temporary of its own, then renamed
    print(f"wrote {len(data['model'])} tensors to {args.output}")


if __name__ == "__main__":
    run_cli(main)
