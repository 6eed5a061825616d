"""lda_common.config_keys.flatten_config: dotted keys, leaves as they are."""
from fvcore.common.config import CfgNode

from lda_common.config_keys import flatten_config


def test_nested_nodes_become_dotted_keys():
    cfg = CfgNode({"SOLVER": {"BASE_LR": 0.05, "STEPS": (8, 11)}, "MODEL": {"ROI_HEADS": {"NAME": "X"}}, "SEED": 1})
    assert flatten_config(cfg) == {"SOLVER.BASE_LR": 0.05, "SOLVER.STEPS": (8, 11), "MODEL.ROI_HEADS.NAME": "X",
                                   "SEED": 1}


def test_a_yaml_round_trip_flattens_to_lists_where_the_config_has_tuples():
    cfg = CfgNode({"INPUT": {"MIN_SIZE_TRAIN": (640, 672), "CROP": {"SIZE": [0.9, 0.9]}}, "EMPTY": ()})
    assert flatten_config(CfgNode.load_cfg(cfg.dump())) == {"INPUT.MIN_SIZE_TRAIN": [640, 672],
                                                           "INPUT.CROP.SIZE": [0.9, 0.9], "EMPTY": []}
    assert flatten_config({}) == {}
