"""Data mistakes are errors naming the key or the classes: the imbalance ratio, empty classes, nested folders."""
import os

import numpy as np
import pytest

from lda_cls import build_dataset, get_cfg
from lda_cls.data import scan_image_folder, subsample_long_tail
from lda_cls.train import main


@pytest.mark.parametrize("ratio", [0.0, -1.0, 0.5, float("nan")])
def test_an_imbalance_ratio_below_one_is_an_error_naming_the_key(ratio, tmp_path, capsys):
    cfg = get_cfg()
    cfg.DATASET.IMBALANCE_RATIO = ratio
    with pytest.raises(ValueError) as refused:
        build_dataset(cfg, "train")
    assert str(refused.value) == (f"DATASET.IMBALANCE_RATIO must be >= 1 (n_max / n_min; 1 keeps the training set "
                                  f"as it is), got {ratio}")
    if ratio != ratio:
        return  # NaN: yacs reads "nan" on a command line as a string
    # The command line refuses it before the output directory is touched.
    with pytest.raises(SystemExit):
        main(["--output-dir", str(tmp_path / "run"), "DATASET.IMBALANCE_RATIO", str(ratio)])
    assert f"error: DATASET.IMBALANCE_RATIO must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_ratio_that_empties_classes_names_them():
    cfg = get_cfg()
    cfg.DATASET.IMBALANCE_RATIO = 1e9
    with pytest.raises(ValueError) as refused:
        build_dataset(cfg, "train")
    assert str(refused.value) == (
        "DATASET.IMBALANCE_RATIO 1e+09 leaves 7 of the 10 classes without a training image: 3, 4, 5, 6, 7, 8, 9 "
        "(class i keeps floor(n_max x IR^(-i/(C-1))) images, n_max 104 here); an IR of at most 104 keeps an image "
        "of every class")
    cfg.DATASET.IMBALANCE_RATIO = 104.0  # the largest ratio the message allows: every class keeps an image
    train, _ = build_dataset(cfg, "train")
    assert np.bincount(train.targets, minlength=10).min() == 1


def test_an_image_folder_names_its_emptied_classes(tmp_path, write_image_tree):
    root = tmp_path / "tree"
    write_image_tree(str(root / "train"), [5, 5, 5], prefix="bird")
    write_image_tree(str(root / "test"), [1, 1, 1], prefix="bird")
    cfg = get_cfg()
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.DATASET.IMBALANCE_RATIO = "imagefolder_lt", str(root), 10.0
    with pytest.raises(ValueError, match=r"leaves 1 of the 3 classes without a training image: bird02 \("):
        build_dataset(cfg, "train", load_images=False)
    assert subsample_long_tail(np.repeat(np.arange(3), 5), 3, 5.0).size == 5 + 2 + 1


def test_nested_folders_of_a_class_are_read_as_torchvision_imagefolder_reads_them(tmp_path, write_image_tree):
    from torchvision.datasets import ImageFolder

    train = tmp_path / "train"
    write_image_tree(str(train), [3, 2], prefix="cls")
    write_image_tree(str(train / "cls00" / "more"), [2], prefix="deep")  # cls00/more/deep00/img_*.png
    write_image_tree(str(train / "cls01" / "a"), [1], prefix="b")
    (train / "cls01" / "notes.txt").write_text("not an image")
    classes, samples = scan_image_folder(str(train))
    reference = ImageFolder(str(train))
    assert classes == reference.classes == ["cls00", "cls01"]
    assert [(os.path.join(str(train), path), label) for path, label in samples] == reference.samples
    assert ("cls00/more/deep00/img_001.png", 0) in samples and len(samples) == 3 + 2 + 2 + 1
