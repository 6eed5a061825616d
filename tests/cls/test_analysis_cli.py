"""python -m lda_cls.analyze on real (tiny) runs of python -m lda_cls.train on digits_lt."""
import json
import os
import re

import numpy as np
import pytest

from lda_cls import analyze, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-epoch LDA and CE runs on the bundled digits_lt (no download, about a minute on 2 CPU cores)."""
    root = tmp_path_factory.mktemp("runs")
    dirs = {}
    for method in ("lda", "ce"):
        dirs[method] = str(root / f"digits_{method}")
        train.main(["--method", method, "--output-dir", dirs[method], "SOLVER.EPOCHS", "1", "LOG_PERIOD", "2"])
    return dirs


def test_analyze_cli_reproduces_the_runs_accuracies_and_writes_the_report(runs, tmp_path, caplog, capsys):
    out = str(tmp_path / "analysis")
    result = analyze.main([runs["lda"], "--compare", runs["ce"], "--out", out, "--per-class", "20"])
    # The summary is printed as an aligned table, one line per run, not as Python lists.
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:4] == ["run", "method", "top-1", "%"] and set(printed[1]) == {"-", " "}
    assert [line.split()[0] for line in printed[2:4]] == ["digits_lda", "digits_ce"]
    assert not any(line.startswith("[") for line in printed)
    assert sorted(os.listdir(out)) == sorted(
        ["alpha_delta_acc.png", "analysis.json", "balance_vs_accuracy.png", "classifier_tsne.png", "features", "intra_inter_distance.png",
         "per_class_accuracy.png", "report.html", "tail_to_head_confusion.png", "train_test_discrepancy.png",
         "weight_norms.png"])
    page = open(result["report"], encoding="utf-8").read()
    assert page.count("data:image/png;base64,") == 8 and "://" not in page  # base64 has no ":"
    assert all(link.startswith("data:") for link in re.findall(r'(?:src|href)="([^"]*)"', page))

    numbers = json.load(open(os.path.join(out, "analysis.json")))
    summary = {row["run"]: row for row in numbers["summary"]}
    for method in ("lda", "ce"):
        reported = json.load(open(os.path.join(runs[method], "results.json")))["balanced"]
        row = summary[f"digits_{method}"]
        # results.json evaluates model_best.pth on the same balanced test set: the numbers must agree.
        assert row["top-1 %"] == pytest.approx(reported["top1"])
        for split in ("many", "medium", "few"):
            assert row[f"{split} %"] == pytest.approx(reported[split])
        assert row["method"] == method
    norms = numbers["quantities"]["weight_norms"]
    assert set(norms) == {"digits_lda: h (balanced)", "digits_lda: h' (unbalanced)", "digits_ce: CE classifier"}
    # digits_lt ResNet-8: 64-dimensional pooled features, 10 classes.
    assert len(norms["digits_ce: CE classifier"]) == 10
    curve_runs = {row["run"] for row in numbers["figures"]["alpha_delta_acc.png"]}
    assert curve_runs == {"digits_lda"}

    # A second call reuses the cached forward passes and gives the same numbers.
    caplog.set_level("INFO")
    again = analyze.main([runs["lda"], "--compare", runs["ce"], "--out", out, "--per-class", "20", "--no-tsne"])
    assert "reusing the forward passes" in caplog.text
    assert [row[:6] for row in again["summary"].rows] == [row[:6] for row in result["summary"].rows]
    # A rewritten checkpoint invalidates the cache of that run only.
    checkpoint = os.path.join(runs["lda"], "model_best.pth")
    later = os.path.getmtime(checkpoint) + 10
    os.utime(checkpoint, (later, later))
    caplog.clear()
    analyze.main([runs["lda"], "--compare", runs["ce"], "--out", out, "--per-class", "20", "--no-tsne"])
    assert "digits_lda: reusing" not in caplog.text and "digits_ce: reusing" in caplog.text


def test_projection_features_have_the_projection_dimension(runs, tmp_path):
    from lda_cls.analysis.collect import collect_run

    run = collect_run(runs["lda"], feature="projection", train_per_class=5)
    assert run.test_features.shape == (500, 128)  # 50 test digits per class, MODEL.PROJECTION.DIM
    assert np.bincount(run.train_targets).max() <= 5
    with pytest.raises(ValueError, match="no 'projection' output"):
        collect_run(runs["ce"], feature="projection", train_per_class=5)


def test_bad_run_directories_get_clear_errors(runs, tmp_path):
    from lda_cls.analysis.collect import collect_run

    with pytest.raises(FileNotFoundError, match="not an lda_cls run directory: .*config.yaml is missing"):
        collect_run(str(tmp_path))
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    (empty / "config.yaml").write_text(open(os.path.join(runs["ce"], "config.yaml")).read())
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*model_best.pth"):
        collect_run(str(empty))
    with pytest.raises(ValueError, match="bad config override"):
        collect_run(runs["ce"], overrides=["DATASET.NO_SUCH_KEY", "1"])
    with pytest.raises(SystemExit):
        analyze.main([runs["ce"], "--compare", runs["ce"]])  # two runs with one name
    detection = tmp_path / "detection_run"  # a train_net.py output directory: named, with the tool to use
    detection.mkdir()
    (detection / "config.yaml").write_text("DATALOADER:\n  NUM_WORKERS: 4\nMODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\n")
    with pytest.raises(ValueError, match=rf"^{detection} is a detection run \(train_net.py\): .* "
                                         rf"projects/LDA/tools/analyze.py {detection}$"):
        collect_run(str(detection))
