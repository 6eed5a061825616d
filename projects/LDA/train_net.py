#!/usr/bin/env python
"""Train / evaluate Mask R-CNN with the LDA ROI head on LVIS (or the synthetic demo).

    python projects/LDA/train_net.py --config-file configs/LVIS-LDA/mask_rcnn_R_50_FPN_1x.yaml --num-gpus 8
    python projects/LDA/train_net.py --config-file configs/LVIS-LDA/synthetic_lt_demo.yaml
    python projects/LDA/train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/to/model_final.pth
    # Evaluate again the predictions an earlier evaluation left in OUTPUT_DIR (no model, no weights):
    python projects/LDA/train_net.py --config-file ... --eval-only --eval-from-shards
    # cRT stage 2 (after the baseline, trained with OUTPUT_DIR output/baseline_mask_rcnn_R_50_FPN_1x):
    python projects/LDA/train_net.py --config-file configs/LVIS-LDA/crt_mask_rcnn_R_50_FPN_1x.yaml --num-gpus 8
"""
import logging
import os
import weakref
from collections import OrderedDict

import detectron2.utils.comm as comm
from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import LVISEvaluator, print_csv_format, verify_results

from lda_common.cli import add_debug_flag, run_cli

from lda_det import add_lda_config, restore_numpy_aliases
from lda_det.checkpoint import AtomicDetectionCheckpointer, HeadCheckingCheckpointer
from lda_det.cpu_ddp import cpu_ddp
from lda_det.data import ensure_available
from lda_det.decoupling import keeping_initialisation, restrict_trainable_parameters
from lda_det.evaluation import ShardedLVISEvaluator
from lda_det.resume_check import check_resume_config
from lda_det.samplers import TRAIN_SAMPLER_REGISTRY


class Trainer(DefaultTrainer):
    """DefaultTrainer with LVIS evaluation and atomic checkpoints. The data loader is
    detectron2's: DatasetMapper (with masks) and DATALOADER.SAMPLER_TRAIN's sampler
    (RepeatFactorTrainingSampler in our configs; lda_det.samplers adds ClassBalancedTrainingSampler).
    Two-stage methods (cRT) are configuration: MODEL.TRAINABLE_PARAMETERS / REINITIALIZED_PARAMETERS."""

    def __init__(self, cfg):
        with cpu_ddp(cfg):  # several CPU processes (gloo): DDP without device_ids
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model with only MODEL.TRAINABLE_PARAMETERS trainable (all when empty); the
        optimizer (detectron2's build_optimizer) skips parameters that do not require grad."""
        return restrict_trainable_parameters(super().build_model(cfg), cfg.MODEL.TRAINABLE_PARAMETERS)

    @classmethod
    def build_train_loader(cls, cfg):
        name = cfg.DATALOADER.SAMPLER_TRAIN
        if name not in TRAIN_SAMPLER_REGISTRY:
            return super().build_train_loader(cfg)  # detectron2's samplers, as detectron2 builds them
        # The sampler indexes the very list the loader reads: the same dataset dicts as detectron2's loader.
        dataset = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None)
        sampler = TRAIN_SAMPLER_REGISTRY.get(name).from_config(cfg, dataset)
        return build_detection_train_loader(cfg, dataset=dataset, sampler=sampler)

    def resume_or_load(self, resume=True):
        """MODEL.REINITIALIZED_PARAMETERS keep their initialisation when MODEL.WEIGHTS is loaded
        (cRT's fresh classifier); a resumed run takes everything from its own checkpoint."""
        if resume and self.checkpointer.has_checkpoint():
            return super().resume_or_load(resume)
        with keeping_initialisation(self.checkpointer.model, self.cfg.MODEL.REINITIALIZED_PARAMETERS):
            return super().resume_or_load(resume)

    def build_hooks(self):
        # Swap in the atomic checkpointer before the hooks (PeriodicCheckpointer) capture it.
        self.checkpointer = AtomicDetectionCheckpointer(self._trainer.model, self.cfg.OUTPUT_DIR,
                                                        trainer=weakref.proxy(self))
        return super().build_hooks()

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """TEST.LVIS_EVALUATOR: "sharded" (default; lda_det.evaluation) or "detectron2" (LVISEvaluator)."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        if cfg.TEST.LVIS_EVALUATOR == "sharded":
            return ShardedLVISEvaluator(dataset_name, output_folder, max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)
        restore_numpy_aliases()  # lvis==0.5.3's LVISEval uses np.float
        return LVISEvaluator(dataset_name, cfg, distributed=True, output_dir=output_folder,
                             max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE)

    @classmethod
    def evaluate_from_shards(cls, cfg):
        """--eval-from-shards: rank 0 evaluates the prediction shards of every DATASETS.TEST (no model)."""
        results = OrderedDict()
        for dataset_name in cfg.DATASETS.TEST:
            if comm.is_main_process():
                results[dataset_name] = cls.build_evaluator(cfg, dataset_name).evaluate_from_shards()
                logging.getLogger("detectron2").info(f"Evaluation results for {dataset_name} in csv format:")
                print_csv_format(results[dataset_name])
        return list(results.values())[0] if len(results) == 1 else results


class EvalCheckpointer(HeadCheckingCheckpointer):
    """Refuses weights of another ROI head (HeadCheckingCheckpointer) and weights that leave part of the model
    as initialised: evaluating them measures random layers."""

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        # LDALoss state (alpha window, class weights) and BN batch counters play no part in inference.
        missing = [key for key in incompatible.missing_keys
                   if ".lda_loss." not in key and not key.endswith("num_batches_tracked")]
        if missing or incompatible.incorrect_shapes:
            shapes = [f"{key} {tuple(got)} vs model {tuple(want)}" for key, got, want in incompatible.incorrect_shapes]
            raise ValueError(f"--eval-only: the weights do not match the model ({len(missing)} model keys missing "
                             f"from them, e.g. {missing[:3]}; {len(shapes)} of another shape, e.g. {shapes[:3]}): "
                             f"pass a checkpoint of this model as MODEL.WEIGHTS")
        return incompatible


LVIS_EVALUATORS = ("sharded", "detectron2")


def build_parser():
    """detectron2's arguments, --debug (the traceback of an error, lda_common.cli) and --eval-from-shards."""
    parser = default_argument_parser()
    add_debug_flag(parser)
    parser.add_argument("--eval-from-shards", action="store_true",
                        help="with --eval-only: evaluate the prediction shards that an earlier evaluation wrote to "
                             "OUTPUT_DIR/inference/lvis_shards/ (TEST.LVIS_EVALUATOR 'sharded') without building "
                             "or running the model")
    return parser


def setup(args):
    if not os.path.isfile(args.config_file):  # detectron2 would assert, which reads as a bug
        raise FileNotFoundError(f"config file not found: {args.config_file}")
    cfg = get_cfg()
    add_lda_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    if args.resume and not args.eval_only:
        check_resume_config(cfg)  # before default_setup overwrites the run's config.yaml
    default_setup(cfg, args)
    box_head = cfg.MODEL.ROI_BOX_HEAD
    if box_head.USE_FED_LOSS and box_head.FED_LOSS_NUM_CLASSES > cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1:
        # detectron2 would fail at the first step (torch.multinomial), e.g. with the default 50 on a 24-class set.
        raise ValueError(f"MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES ({box_head.FED_LOSS_NUM_CLASSES}) exceeds "
                         f"NUM_CLASSES + 1 ({cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1}): detectron2 cannot sample that "
                         f"many classes; NUM_CLASSES + 1 already keeps them all (plain sigmoid cross-entropy)")
    if cfg.TEST.LVIS_EVALUATOR not in LVIS_EVALUATORS:
        raise ValueError(f"TEST.LVIS_EVALUATOR {cfg.TEST.LVIS_EVALUATOR!r} is not one of {LVIS_EVALUATORS}")
    if getattr(args, "eval_from_shards", False) and (not args.eval_only or cfg.TEST.LVIS_EVALUATOR != "sharded"):
        raise ValueError("--eval-from-shards evaluates the shards of TEST.LVIS_EVALUATOR 'sharded' and needs --eval-only")
    # Fail here, naming the missing file, rather than deep inside a data loader.
    for name in cfg.DATASETS.TEST + (() if args.eval_only else cfg.DATASETS.TRAIN):
        ensure_available(name)
    return cfg


def main(args):
    cfg = setup(args)
    if getattr(args, "eval_from_shards", False):
        res = Trainer.evaluate_from_shards(cfg)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    if args.eval_only:
        model = Trainer.build_model(cfg)
        checkpointer = EvalCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
        if not cfg.MODEL.WEIGHTS and not (args.resume and checkpointer.has_checkpoint()):
            raise ValueError("--eval-only needs weights: set MODEL.WEIGHTS (or --resume with a checkpoint in "
                             "OUTPUT_DIR); without them it would evaluate a randomly initialised model")
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_main(argv):
    args = build_parser().parse_args(argv)
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    run_cli(launch_main)  # a mistake is one line "error: ...", exit status 1 (the traceback with --debug)
