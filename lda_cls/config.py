"""Every configuration key of lda_cls, with its default.

The defaults are the embedded ``digits_lt`` demo (what ``python -m lda_cls.train``
runs with no arguments); configs/cls/*.yaml state what each benchmark changes.
Paper symbols refer to Peng et al., "Long-tailed Distribution Adaptation", ACM MM 2021.
"""
from pathlib import Path

from fvcore.common.config import CfgNode as CN

__all__ = ["get_cfg", "add_lda_cls_config", "configs_root"]


def add_lda_cls_config(cfg: CN) -> None:
    """Add every lda_cls key to ``cfg`` (detectron2-style: one function, all keys)."""
    cfg.NAME = "digits_lt_lda"  # run name, only used in logs
    cfg.OUTPUT_DIR = ""  # "" = output/<DATASET.NAME>_<METHOD>
    cfg.SEED = 0  # seeds torch/numpy/python; epoch e of rank r reseeds with SEED + 1000 e + r
    cfg.METHOD = "lda"  # a name registered in lda_cls/methods ("lda": Eq. 9; "ce", "ldam_drw", "crt", ...); see README
    cfg.LOG_PERIOD = 20  # log (and sync with the device) every this many iterations
    cfg.CHECKPOINT_PERIOD = 1  # write last_checkpoint.pth every this many epochs
    cfg.NUM_THREADS = 1  # CPU intra-op threads per process; 0 = torch's default (1 keeps tiny models fast on busy CPUs)
    cfg.CUDNN_BENCHMARK = False  # True trades bitwise reproducibility for speed on GPUs
    cfg.DIST_TIMEOUT_S = 1800  # s a collective waits for the other ranks (gloo's default), then fails naming the rank

    cfg.DATASET = CN()
    cfg.DATASET.NAME = "digits_lt"  # digits_lt | cifar10_lt | cifar100_lt | imagenet_lt | places_lt | imagefolder_lt
    cfg.DATASET.ROOT = ""  # data root: CIFAR download dir or image-folder tree, image root of split files
    cfg.DATASET.NUM_CLASSES = 0  # C; 0 = known for the dataset (10, 100, 1000, 365) or from the class folders
    cfg.DATASET.IMBALANCE_RATIO = 10.0  # IR = n_max / n_min of the exponential profile, >= 1; 1 keeps the data as is
    cfg.DATASET.SUBSAMPLE_SEED = 0  # which images of each class the profile keeps
    cfg.DATASET.DOWNLOAD = True  # CIFAR: let torchvision download when ROOT has no image-folder tree
    cfg.DATASET.CACHE_DIR = ""  # image-folder CIFAR: decode the JPEGs once into a uint8 tensor file here
    cfg.DATASET.TRAIN_DIR = "train"  # image-folder trees: sub-folder of the training images
    cfg.DATASET.TEST_DIR = "test"  # image-folder trees: sub-folder of the (balanced) test images
    cfg.DATASET.VAL_DIR = "val"  # imagefolder_lt: optional sub-folder of validation images (model selection)
    cfg.DATASET.TRAIN_SPLIT_FILE = ""  # imagenet_lt / places_lt: "relative/path label" per line
    cfg.DATASET.VAL_SPLIT_FILE = ""  # validation split file: model selection
    cfg.DATASET.TEST_SPLIT_FILE = ""  # test split file: the reported number
    cfg.DATASET.PLACES_LAYOUT = "auto"  # places_lt images: "listed" | "release" | "auto" (lda_cls/data/places365.py)
    cfg.DATASET.DIGITS_TEST_PER_CLASS = 50  # digits_lt: balanced held-out test images per class
    cfg.DATASET.DIGITS_VAL_PER_CLASS = 20  # digits_lt: balanced validation images per class (0 = none)
    cfg.DATASET.NUM_WORKERS = 0  # DataLoader workers per process (in-memory datasets need none)
    cfg.DATASET.CHECK_EVAL_IMAGES = True  # file datasets: decode every val / test image before training
    cfg.DATASET.ON_DEVICE = False  # in-memory datasets: hold the uint8 images on the device, batch them there

    cfg.INPUT = CN()
    cfg.INPUT.SIZE = 8  # training crop size (and test size of in-memory datasets)
    cfg.INPUT.TEST_RESIZE = 256  # file datasets: shorter side before the test center crop
    cfg.INPUT.PAD_CROP = 1  # in-memory datasets: random crop of SIZE after zero-padding this many pixels
    cfg.INPUT.FLIP = False  # random horizontal flip (off for digits: a flipped digit is another glyph)
    cfg.INPUT.RANDOM_RESIZED_CROP = False  # file datasets: RandomResizedCrop instead of resize + random crop
    cfg.INPUT.COLOR_JITTER = 0.0  # file datasets: brightness/contrast/saturation jitter strength
    cfg.INPUT.MEAN = [0.5]  # per-channel mean in [0, 1]
    cfg.INPUT.STD = [0.5]  # per-channel std in [0, 1]

    cfg.MODEL = CN()
    cfg.MODEL.BACKBONE = "resnet8_cifar"  # any timm.create_model name; resnet*_cifar are registered by lda_cls
    cfg.MODEL.IN_CHANS = 1  # input channels
    cfg.MODEL.PRETRAINED_FILE = ""  # local ImageNet weights for the backbone (Places-LT: resnet152)
    cfg.MODEL.FREEZE = "none"  # "none" | "all_but_last_block" (Places-LT: only the last residual block trains)
    cfg.MODEL.FROZEN_BN = "train"  # BN of frozen layers: "train" batch statistics (official Places trainer) | "frozen"
    cfg.MODEL.ZERO_INIT_LAST = True  # timm ResNets: last BN per block at 0; False: at 1 (official lib/backbone/resnext.py)
    cfg.MODEL.BIAS = True  # bias of the classifiers h and h'
    cfg.MODEL.CLASSIFIER = "linear"  # h: linear | cosine (LDAM) | lws | tau_norm | ncm | ncm_euclidean | logit_adjusted
    cfg.MODEL.PROJECTION = CN()
    cfg.MODEL.PROJECTION.ENABLED = True  # projection head p, whose output feeds intra/inter (Eq. 7, 8)
    cfg.MODEL.PROJECTION.DIM = 128  # output dimension of p

    cfg.LDA = CN()
    cfg.LDA.GAMMA = 1.0  # exponent gamma of alpha = (delta acc)^gamma (Eq. 6)
    cfg.LDA.BETA = 0.5  # weight beta of intra + inter (Eq. 9)
    cfg.LDA.MARGIN = 1.0  # margin m of the inter-class hinge (Eq. 8)
    cfg.LDA.WINDOW = 100  # L, mini-batches averaged in delta acc (Eq. 6)
    cfg.LDA.UNBALANCED_FACTOR = 1.0  # multiplier of R_s(h') (official LOSS0_FACTOR)
    cfg.LDA.BALANCED_FACTOR = 2.0  # multiplier of alpha R_u(h) (official LOSS1_FACTOR)
    cfg.LDA.WEIGHTED_INTER = False  # weight inter pairs by w_i + w_j (Eq. 8)
    cfg.LDA.FIXED_ALPHA = -1.0  # >= 0: constant alpha instead of Eq. 6 (the paper's grid-search ablation)
    cfg.LDA.SCALING = "official"  # "official" | "normalized": see lda_core.loss
    cfg.LDA.BALANCED_RISK = "importance_weighted"  # R_u(h): "importance_weighted" (Eq. 5) | "logit_adjusted" (Menon 2021)
    cfg.LDA.DIVERGENCE_FEATURES = "projection"  # what D.M (Eq. 7, 8) acts on: "projection" p(x) | "backbone" features

    cfg.LOSS = CN()  # the compared losses (lda_cls/methods); each key's source is in configs/cls/methods/
    cfg.LOSS.FOCAL_GAMMA = 1.0  # gamma of the focal modulation (1 - p_y)^gamma (Lin et al. 2017)
    cfg.LOSS.LDAM_MAX_MARGIN = 0.5  # largest LDAM margin: Delta_y = C / n_y^(1/4) scaled to this (Cao et al. 2019)
    cfg.LOSS.LDAM_SCALE = 30.0  # s, scale of LDAM's cosine logits (Cao et al. 2019, official code)
    cfg.LOSS.LOGIT_ADJUST_TAU = 1.0  # tau of the logit adjustment tau log pi_y (Menon et al. 2021)

    cfg.REWEIGHT = CN()  # per-class loss weights w_y (RW, CB, DRW), set by lda_cls/hooks/schedules.py
    cfg.REWEIGHT.TYPE = "none"  # "none" | "inverse" (w_y ~ 1/n_y) | "effective" ((1-beta)/(1-beta^n_y), Cui 2019)
    cfg.REWEIGHT.BETA = 0.9999  # beta of the effective number of samples (Cui et al. 2019, Eq. 3)
    cfg.REWEIGHT.START_EPOCH = 0  # deferred re-weighting: w_y from this epoch on, 1 before (Cao et al.: 160 of 200)

    cfg.SAMPLER = CN()  # lda_cls/samplers.py
    cfg.SAMPLER.NAME = "instance"  # instance | class_balanced | square_root | progressive (Kang et al. 2020, Sec. 3)
    cfg.SAMPLER.DEFERRED = ""  # deferred re-sampling: this sampler from SAMPLER.DEFERRED_EPOCH on ("" = none)
    cfg.SAMPLER.DEFERRED_EPOCH = 160  # epoch of the DRS switch (Cao et al. 2019: 160 of 200)

    cfg.DECOUPLE = CN()  # two-stage methods (Kang et al. 2020): start from a stage-1 run
    cfg.DECOUPLE.STAGE1_WEIGHTS = ""  # stage-1 checkpoint (--weights of a training run), e.g. a CE model_best.pth
    # "train" (Kang et al.'s run_networks.py): batch statistics, running ones re-estimated under class-balanced
    # sampling; "eval": stage-1 statistics kept.
    cfg.DECOUPLE.BACKBONE_BN = "train"  # cRT / LWS: mode of the frozen backbone's BatchNorms in stage 2
    cfg.DECOUPLE.TAU_GRID = [i / 10 for i in range(11)]  # tau-norm tau in [0, 1] (Kang et al.), picked on val

    cfg.SOLVER = CN()
    cfg.SOLVER.EPOCHS = 30  # training epochs
    cfg.SOLVER.STOP_EPOCH = -1  # >= 0: stop after this many epochs (time-sliced jobs; then --resume)
    cfg.SOLVER.BATCH_SIZE = 64  # global batch size, split evenly over the processes
    cfg.SOLVER.BASE_LR = 0.05  # learning rate after warm-up
    cfg.SOLVER.MOMENTUM = 0.9  # SGD momentum
    cfg.SOLVER.NESTEROV = False  # Nesterov momentum; Base-*.yaml: True (official lib/utils/utils.py get_optimizer)
    cfg.SOLVER.WEIGHT_DECAY = 5e-4  # L2 weight decay
    cfg.SOLVER.SCHEDULER = "cosine"  # timm scheduler: "cosine" | "multistep" (stepped every iteration)
    cfg.SOLVER.MILESTONES = [160, 180]  # multistep: epochs at which the lr is multiplied by DECAY_RATE
    cfg.SOLVER.DECAY_RATE = 0.01  # multistep: lr factor per milestone
    cfg.SOLVER.WARMUP_EPOCHS = 1  # linear warm-up epochs
    cfg.SOLVER.WARMUP_LR = 0.0  # lr at the first warm-up iteration
    cfg.SOLVER.MIN_LR = 0.0  # cosine: final lr
    cfg.SOLVER.AMP = "bf16"  # autocast "bf16" | "fp16" | "none"; CPU: bf16 only where it is native (else fp32)
    cfg.SOLVER.CHANNELS_LAST = True  # CUDA only: channels_last memory format (no gain on CPUs in bf16)

    cfg.TEST = CN()
    cfg.TEST.BATCH_SIZE = 256  # global evaluation batch size
    cfg.TEST.EVAL_PERIOD = 1  # evaluate on the validation split every this many epochs
    cfg.TEST.MANY_THRESHOLD = 100  # many-shot: more than this many training images
    cfg.TEST.FEW_THRESHOLD = 20  # few-shot: fewer than this many training images


def get_cfg() -> CN:
    """A fresh copy of the defaults."""
    cfg = CN()
    add_lda_cls_config(cfg)
    return cfg


def configs_root() -> Path:
    """The configs/ tree (cls/*.yaml under it): package data of an installed lda_cls, else a checkout's.

    setup.py maps the repository's configs/ to lda_cls/configs/ in the wheel; in a
    checkout (or an editable install) configs/ is next to the package.
    """
    package = Path(__file__).resolve().parent
    installed = package / "configs"
    return installed if installed.is_dir() else package.parent / "configs"
