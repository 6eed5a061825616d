"""train_net.py --resume refuses a changed config, naming the keys, before config.yaml is overwritten."""
import os

import pytest

from lda_det.resume_check import ResumeRefused, resume_config_changes

from .conftest import load_train_net, tiny_cfg, tiny_opts


def _stopped_run(output_dir, train_net, opts):
    """A run directory as detectron2 leaves it: its config.yaml and a last_checkpoint pointer."""
    args = train_net.build_parser().parse_args(["--config-file", _config_file()] + opts)
    cfg = train_net.setup(args)
    with open(os.path.join(output_dir, "last_checkpoint"), "w") as handle:
        handle.write("model_0000004.pth")
    return cfg


def _config_file():
    from lda_det import model_zoo
    return model_zoo.get_config_file("LVIS-LDA/synthetic_lt_demo.yaml")


def test_resume_with_another_head_or_lr_is_refused_and_config_yaml_survives(tmp_path, synthetic_root):
    train_net = load_train_net()
    opts = tiny_opts(tmp_path)
    _stopped_run(tmp_path, train_net, opts)
    saved = (tmp_path / "config.yaml").read_text()
    changed = opts + ["MODEL.ROI_HEADS.NAME", "StandardROIHeads", "SOLVER.BASE_LR", "0.5"]
    args = train_net.build_parser().parse_args(["--config-file", _config_file(), "--resume"] + changed)
    with pytest.raises(ResumeRefused) as refused:
        train_net.setup(args)
    message = str(refused.value)
    assert "MODEL.ROI_HEADS.NAME 'LDAROIHeads' -> 'StandardROIHeads'" in message
    assert "SOLVER.BASE_LR" in message and "-> 0.5" in message
    assert (tmp_path / "config.yaml").read_text() == saved


def test_resume_with_the_same_config_or_only_resumable_changes_is_accepted(tmp_path, synthetic_root):
    train_net = load_train_net()
    opts = tiny_opts(tmp_path)
    _stopped_run(tmp_path, train_net, opts)
    args = train_net.build_parser().parse_args(
        ["--config-file", _config_file(), "--resume"] + opts + ["SOLVER.CHECKPOINT_PERIOD", "7",
                                                                "TEST.EVAL_PERIOD", "3"])
    assert train_net.setup(args).SOLVER.CHECKPOINT_PERIOD == 7


def test_changes_are_listed_key_by_key():
    old, new = tiny_cfg(), tiny_cfg(opts=["SOLVER.MAX_ITER", 99, "SOLVER.CHECKPOINT_PERIOD", 9])
    assert resume_config_changes(old, new) == [f"SOLVER.MAX_ITER {old.SOLVER.MAX_ITER!r} -> 99"]
