"""projects/LDA/tools/check_lvis.py on a tiny good LVIS v1 tree and on a broken copy of it."""
import importlib.util
import json
import os

import pytest
from PIL import Image

from lda_det.data.lvis_sized import lvis_sized_ground_truth

TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "LDA", "tools", "check_lvis.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("lda_det_check_lvis_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root):
    """<root>/lvis/lvis_v1_{train,val}.json (LVIS v1's 1203 categories) and their images under coco/."""
    for split, folder, seed in (("train", "train2017", 0), ("val", "val2017", 1)):
        gt = lvis_sized_ground_truth(3, seed=seed, first_image_id=1000 * (seed + 1))
        for image in gt["images"]:
            image["coco_url"] = f"http://images.cocodataset.org/{folder}/{image['id']:012d}.jpg"
            path = root / "coco" / folder / f"{image['id']:012d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (image["width"], image["height"]), (90, 120, 150)).save(path)
        (root / "lvis").mkdir(exist_ok=True)
        with open(root / "lvis" / f"lvis_v1_{split}.json", "w") as f:
            json.dump(gt, f)


def _edit(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return data


def test_a_good_tree_passes(tool, tmp_path, capsys):
    _tree(tmp_path)
    assert tool.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lvis_v1_train: 3 images" in out and "3 image files checked" in out and "no problems" in out


def test_a_broken_tree_is_listed(tool, tmp_path, capsys):
    _tree(tmp_path)
    train, val = tmp_path / "lvis" / "lvis_v1_train.json", tmp_path / "lvis" / "lvis_v1_val.json"

    def break_train(data):
        data["categories"] = data["categories"][:-1]  # 1202 categories
        data["categories"][0]["image_count"] += 1
        del data["images"][1]["neg_category_ids"]
        data["annotations"][0]["category_id"] = 5000
        data["annotations"][1]["bbox"] = [1, 2, 3]
    data = _edit(train, break_train)
    images = data["images"]
    missing = tmp_path / "coco" / "train2017" / f"{images[0]['id']:012d}.jpg"
    os.remove(missing)
    not_an_image = tmp_path / "coco" / "train2017" / f"{images[1]['id']:012d}.jpg"
    not_an_image.write_text("not a jpeg")
    wrong_size = tmp_path / "coco" / "train2017" / f"{images[2]['id']:012d}.jpg"
    Image.new("RGB", (10, 10)).save(wrong_size)
    val.write_text('{"images": [')  # truncated

    assert tool.main(["--root", str(tmp_path), "--list", "1"]) == 1
    out = capsys.readouterr().out
    expected = [
        f"PROBLEM lvis_v1_train: category count: 1\n    {train}: 1202 categories, LVIS v1 has 1203",
        "PROBLEM lvis_v1_train: LVIS v1 categories missing: 1\n    " + f"{train}: id 1203 (zucchini)",
        "PROBLEM lvis_v1_train: category image counts differ from LVIS v1 train: 1",
        f"PROBLEM lvis_v1_train: images missing fields: 1\n    {train}: image {images[1]['id']} has no "
        "['neg_category_ids']",
        f"PROBLEM lvis_v1_train: image files missing: 1\n    {missing}",
        f"PROBLEM lvis_v1_train: image files that are not images: 1\n    {not_an_image}",
        f"PROBLEM lvis_v1_train: image sizes differ from the json: 1\n    {wrong_size}: 10x10",
        "PROBLEM lvis_v1_train: annotations of unknown categories: 1",
        "PROBLEM lvis_v1_train: annotations with a malformed bbox: 1",
        f"PROBLEM lvis_v1_val: json unreadable: 1\n    {val}",
        "10 problems.",
        f"Expected layout (detectron2's built-in LVIS v1 registration, root {tmp_path}):",
    ]
    for text in expected:
        assert text in out, text
    os.remove(val)
    assert tool.main(["--root", str(tmp_path), "--no-image-headers"]) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM lvis_v1_val: json missing: 1\n    {val}" in out
    assert "image files that are not images" not in out  # headers not read


def test_many_missing_images_are_counted_and_the_first_listed(tool, tmp_path, capsys):
    _tree(tmp_path)
    folder = tmp_path / "coco" / "val2017"
    names = sorted(os.listdir(folder))
    for name in names:
        os.remove(folder / name)
    assert tool.main(["--root", str(tmp_path), "--list", "2"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM lvis_v1_val: image files missing: 3 (first 2)" in out


def test_the_command_line_exits_1_with_the_report_and_no_traceback(tmp_path):
    import subprocess
    import sys
    (tmp_path / "lvis").mkdir()
    (tmp_path / "lvis" / "lvis_v1_train.json").write_text('{"images": [], "annotations": 3}')
    done = subprocess.run([sys.executable, TOOL, "--root", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert "PROBLEM lvis_v1_train: json without an LVIS list: 1" in done.stdout
    assert "PROBLEM lvis_v1_val: json missing: 1" in done.stdout and "Expected layout" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
