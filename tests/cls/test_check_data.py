"""python -m lda_cls.check_data on tiny good and broken ImageNet-LT / Places-LT trees."""
import os

import pytest
from PIL import Image

from lda_cls import check_data


def _imagenet_tree(root, per_split=3):
    """<root>/imagenet/<split>/<wnid>/<file>.JPEG and <root>/ImageNet_LT/ImageNet_LT_<split>.txt."""
    (root / "ImageNet_LT").mkdir()
    for split in ("train", "val", "test"):
        folder = "train" if split == "train" else "val"
        lines = []
        for i in range(per_split):
            path = f"{folder}/n0{i}/{split}_{i}.JPEG"
            (root / "imagenet" / folder / f"n0{i}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 6)).save(root / "imagenet" / path, format="JPEG")
            lines.append(f"{path} {i}")
        (root / "ImageNet_LT" / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")


def _run(*args):
    return check_data.main(list(args))


def test_a_good_subset_passes_and_the_full_counts_are_asked_for(tmp_path, capsys):
    _imagenet_tree(tmp_path)
    root = str(tmp_path / "imagenet")
    assert _run("--dataset", "imagenet_lt", "--data-root", root, "--any-size") == 0
    out = capsys.readouterr().out
    assert "imagenet_lt train: 3 images listed, 3 classes, 0 missing" in out and "no problems" in out
    # Without --any-size a 3-image split is not the release.
    assert _run("--dataset", "imagenet_lt", "--data-root", root) == 1
    out = capsys.readouterr().out
    assert "PROBLEM imagenet_lt train: image count differs from the release: 1" in out
    assert "3 images, the release lists 115846" in out
    assert "PROBLEM imagenet_lt train: classes without a training image: 1" in out


def test_a_broken_tree_is_listed_with_totals_and_the_layout(tmp_path, capsys):
    _imagenet_tree(tmp_path, per_split=4)
    root = tmp_path / "imagenet"
    split_dir = tmp_path / "ImageNet_LT"
    for i in range(3):
        os.remove(root / "train" / f"n0{i}" / f"train_{i}.JPEG")
    (root / "val" / "n03" / "val_3.JPEG").write_text("not a jpeg")
    (root / "val" / "n02" / "val_2.JPEG").write_bytes(b"")
    with open(split_dir / "ImageNet_LT_test.txt", "a") as f:
        f.write("val/n00/x.JPEG 1000\nval/n00/y.JPEG\n")
    os.remove(split_dir / "ImageNet_LT_val.txt")
    assert _run("--dataset", "imagenet_lt", "--data-root", str(root), "--any-size", "--list", "2") == 1
    out = capsys.readouterr().out
    expected = [
        f"PROBLEM imagenet_lt train: image files missing: 3 (first 2)\n    {root}/train/n00/train_0.JPEG\n"
        f"    {root}/train/n01/train_1.JPEG\n",
        f"PROBLEM imagenet_lt val: split file missing: 1\n    {split_dir}/ImageNet_LT_val.txt",
        "PROBLEM imagenet_lt test: labels outside [0, 1000): 1",
        "PROBLEM imagenet_lt test: lines that are not 'path label': 1",
        "6 problems.",
        "Expected layout (imagenet_lt",
    ]
    for text in expected:
        assert text in out, text
    # The val split file is back: its empty and non-image files are found from the header alone.
    (split_dir / "ImageNet_LT_val.txt").write_text("".join(f"val/n0{i}/val_{i}.JPEG {i}\n" for i in range(4)))
    assert _run("--dataset", "imagenet_lt", "--data-root", str(root), "--any-size") == 1
    out = capsys.readouterr().out
    assert f"PROBLEM imagenet_lt val: image files empty: 1\n    {root}/val/n02/val_2.JPEG" in out
    assert f"PROBLEM imagenet_lt val: image files that are not images: 1\n    {root}/val/n03/val_3.JPEG" in out
    assert _run("--dataset", "imagenet_lt", "--data-root", str(root), "--any-size", "--no-image-headers") == 1
    assert "not images" not in capsys.readouterr().out


def test_places_lt_in_the_release_layout(tmp_path, capsys):
    root, split_dir = tmp_path / "places365", tmp_path / "Places_LT"
    split_dir.mkdir()
    listed = {"train": ["train/bazaar-indoor/00000001.jpg 0", "train/airfield/00000002.jpg 1"],
              "val": ["val/airfield/Places365_val_00000001.jpg 1"],
              "test": ["val/bazaar-indoor/Places365_val_00000002.jpg 0"]}
    for split, lines in listed.items():
        (split_dir / f"Places_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    for path in ("train/b/bazaar/indoor/00000001.jpg", "train/a/airfield/00000002.jpg",
                 "val/Places365_val_00000001.jpg", "val/Places365_val_00000002.jpg"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / path, format="JPEG")
    assert _run("--dataset", "places_lt", "--data-root", str(root), "--any-size") == 0
    capsys.readouterr()
    assert _run("--dataset", "places_lt", "--data-root", str(root), "--any-size", "--places-layout", "listed") == 1
    out = capsys.readouterr().out
    assert "PROBLEM places_lt train: Places-365 layout: 1" not in out  # 'listed' is taken as given
    assert f"PROBLEM places_lt train: image files missing: 2\n    {root}/train/bazaar-indoor/00000001.jpg" in out


def test_a_missing_tree_is_named_and_a_wrong_dataset_is_argparse_s(capsys):
    assert _run("--dataset", "imagenet_lt", "--data-root", "/nonexistent/imagenet") == 1
    out = capsys.readouterr().out
    assert "PROBLEM imagenet_lt: image root missing: 1\n    /nonexistent/imagenet" in out
    assert "PROBLEM imagenet_lt train: split file missing: 1\n    /nonexistent/ImageNet_LT/ImageNet_LT_train.txt" in out
    with pytest.raises(SystemExit) as exit_info:
        _run("--dataset", "cifar", "--data-root", "x")
    assert exit_info.value.code == 2 and "invalid choice: 'cifar'" in capsys.readouterr().err


def test_the_command_line_exits_1_with_the_report_and_no_traceback(tmp_path):
    import subprocess
    import sys
    _imagenet_tree(tmp_path)
    os.remove(tmp_path / "imagenet" / "train" / "n01" / "train_1.JPEG")
    done = subprocess.run([sys.executable, "-m", "lda_cls.check_data", "--dataset", "imagenet_lt",
                           "--data-root", str(tmp_path / "imagenet"), "--any-size"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "PROBLEM imagenet_lt train: image files missing: 1" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
