"""Validation and test images are decoded before training: a damaged one stops the run before epoch 1."""
import os

import numpy as np
import pytest
from PIL import Image

from lda_cls.data.decode_check import check_decodable, decode_error, undecodable_images


def _jpeg(path, size=(64, 48), seed=0):
    pixels = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return str(path)


def _truncated_copy(source, target):
    data = open(source, "rb").read()
    with open(target, "wb") as f:
        f.write(data[:len(data) // 2])
    return str(target)


def test_decode_error_finds_truncated_and_non_image_files(tmp_path):
    good = _jpeg(tmp_path / "good.jpg")
    png = tmp_path / "good.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 255, (48, 64, 3)).astype(np.uint8)).save(png)
    truncated_jpeg = _truncated_copy(good, tmp_path / "half.jpg")
    truncated_png = _truncated_copy(png, tmp_path / "half.png")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    assert decode_error(good) == "" and decode_error(str(png)) == ""
    for truncated in (truncated_jpeg, truncated_png):  # their headers are intact: only decoding finds them
        with Image.open(truncated) as image:
            assert image.size == (64, 48)
    assert decode_error(truncated_jpeg).startswith("OSError: image file is truncated")
    assert decode_error(truncated_png).startswith("OSError: ")
    assert decode_error(str(text)).startswith("UnidentifiedImageError: cannot identify image file")
    assert undecodable_images([good, str(text), str(png), truncated_jpeg]) == [
        (str(text), decode_error(str(text))), (truncated_jpeg, decode_error(truncated_jpeg))]


def test_check_decodable_names_the_first_five_and_counts_the_rest(tmp_path):
    good = _jpeg(tmp_path / "good.jpg")
    broken = []
    for index in range(7):
        path = tmp_path / f"broken_{index}.jpg"
        path.write_bytes(b"\xff\xd8\xff")  # a JPEG start marker, nothing else
        broken.append(str(path))
    check_decodable([good] * 3, "a split")
    with pytest.raises(ValueError, match=r"^7 of the 8 images of the test split do not decode: "
                                         r".*broken_0.jpg \(.*\); .*broken_4.jpg \(.*\) \(and 2 more\) "
                                         r"\(DATASET.CHECK_EVAL_IMAGES False skips this check\)$"):
        check_decodable([good] + broken, "the test split", num_workers=2)


def _ranks_worker(rank, port, paths, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        check_decodable(paths, "the split")
        results[rank] = ""
    except ValueError as error:
        results[rank] = str(error)
    finally:
        dist.destroy_process_group()


def test_two_ranks_decode_half_each_and_raise_the_same_error(tmp_path):
    import torch.multiprocessing as mp

    from tests.helpers import free_port

    paths = [_jpeg(tmp_path / f"{i}.jpg", seed=i) for i in range(5)]
    for index in (1, 4):  # rank 1's shard and rank 0's shard
        with open(paths[index], "wb") as f:
            f.write(b"damaged")
    results = mp.Manager().dict()
    mp.spawn(_ranks_worker, args=(free_port(), paths, results), nprocs=2, join=True)
    assert results[0] == results[1]
    assert results[0].startswith(f"2 of the 5 images of the split do not decode: {paths[1]} (")
    assert f"; {paths[4]} (" in results[0]


def test_a_damaged_test_image_stops_the_run_before_the_first_epoch(tmp_path, write_image_tree):
    from lda_cls.train import main as train_main

    root = tmp_path / "imagenet"
    write_image_tree(str(root / "train"), [6, 4], prefix="n")
    lines = [f"train/n{label:02d}/img_{i:03d}.png {label}" for label, n in enumerate([6, 4]) for i in range(n)]
    os.makedirs(root / "val" / "n01")
    _truncated_copy(root / "train" / "n01" / "img_003.png", root / "val" / "n01" / "damaged.png")
    files = {}
    for name in ("train", "val", "test"):  # the damaged image is listed for evaluation only
        files[name] = str(tmp_path / f"{name}.txt")
        with open(files[name], "w") as f:
            f.write("\n".join(lines + ([] if name == "train" else ["val/n01/damaged.png 1"])) + "\n")
    args = ["--dataset", "imagenet_lt", "--data-root", str(root), "DATASET.NUM_CLASSES", "2",
            "DATASET.TRAIN_SPLIT_FILE", files["train"], "DATASET.VAL_SPLIT_FILE", files["val"],
            "DATASET.TEST_SPLIT_FILE", files["test"], "MODEL.BACKBONE", "resnet8_cifar", "INPUT.SIZE", "8",
            "INPUT.TEST_RESIZE", "8", "SOLVER.BATCH_SIZE", "4", "SOLVER.EPOCHS", "1"]
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^1 of the 11 images of the imagenet_lt val split do not decode: "
                                         r".*val/n01/damaged.png \("):
        train_main(["--output-dir", str(out)] + args)
    assert not (out / "metrics.jsonl").exists() and not (out / "last_checkpoint.pth").exists()
    # Without the check the same file stops the run only when the first evaluation reads it.
    with pytest.raises(RuntimeError, match=r"cannot read image .*val/n01/damaged.png"):
        train_main(["--output-dir", str(tmp_path / "unchecked")] + args + ["DATASET.CHECK_EVAL_IMAGES", "False"])
