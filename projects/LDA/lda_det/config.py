"""The config keys of lda_det, with their defaults: MODEL.LDA.* (the LDA ROI head) and those of the compared
heads (MODEL.SEESAW.*, MODEL.EQL.*, MODEL.EQLV2.*, MODEL.FEDERATED.*, the decoupling keys of cRT)."""
from detectron2.config import CfgNode as CN


def add_lda_config(cfg):
    """Add the config keys of LDA (Peng et al., ACM MM 2021), and of the heads compared with it, to a
    detectron2 config: one call gives every lda_det config file the keys it may set."""
    _C = cfg
    add_seesaw_config(_C)
    add_eql_config(_C)
    add_eqlv2_config(_C)
    add_federated_config(_C)
    add_decoupling_config(_C)
    add_evaluation_config(_C)
    # Name of the box predictor in lda_det.heads.BOX_PREDICTOR_REGISTRY that PredictorROIHeads builds.
    _C.MODEL.ROI_BOX_HEAD.PREDICTOR = "FastRCNNOutputLayers"
    # The predictor logs its own statistics (LDA's alpha and delta acc, the others' accuracies and class
    # weights) every this many iterations: each log is a host sync, so not every step.
    _C.MODEL.ROI_BOX_HEAD.LOG_PERIOD = 20
    _C.MODEL.LDA = CN()
    # Exponent `gamma` of the balance factor alpha = (delta acc)^gamma (Eq. 6).
    _C.MODEL.LDA.GAMMA = 1.5
    # Weight `beta` of the intra + inter divergence terms in the total risk (Eq. 9).
    _C.MODEL.LDA.BETA = 0.1
    # Margin `m` of the inter-class hinge max(0, m - d(mu_i, mu_j)) (Eq. 8).
    _C.MODEL.LDA.MARGIN = 1.0
    # Window `L`: number of recent mini-batches averaged into delta acc (Eq. 6).
    _C.MODEL.LDA.WINDOW = 100
    # Output dimension of the projection head `g` whose features enter Eq. 7 / 8.
    _C.MODEL.LDA.PROJECTION_DIM = 128
    # Hidden width of `g`; 0 (default) makes `g` one Linear, as the official code and lda_cls do;
    # > 0 makes it Linear-ReLU-Linear (our variant, used by the CPU demo configs).
    _C.MODEL.LDA.PROJECTION_HIDDEN_DIM = 0
    # Source of the class counts `n_y` behind the balanced weights w_y ~ 1/n_y (Eq. 5):
    # "instance_count" (annotations per class in DATASETS.TRAIN), "image_count" (LVIS
    # images per class) or "config" (MODEL.LDA.CLASS_COUNTS).
    _C.MODEL.LDA.CLASS_COUNT_SOURCE = "instance_count"
    # With "instance_count": count n_y as the training sampler draws the instances (each image's
    # annotations r(image) times under RepeatFactorTrainingSampler; expected per epoch, rounded), so
    # that w_y ~ p_u(y) / p_s(y) uses the distribution p_s the batches come from (Eq. 5) and the
    # calibrated weights N / (C n_y) have mean 1 under it. False counts each annotation once.
    _C.MODEL.LDA.COUNTS_UNDER_SAMPLER = False
    # Explicit `n_y`, one per class, used when CLASS_COUNT_SOURCE is "config".
    _C.MODEL.LDA.CLASS_COUNTS = []
    # Factor on the unbalanced risk R_s(h') (Eq. 5 / 9).
    _C.MODEL.LDA.UNBALANCED_LOSS_WEIGHT = 1.0
    # Factor on the balanced risk alpha * R_u(h) (Eq. 5 / 9); 2 in the official configs. With SCALING
    # "calibrated": the coefficient of the normalised risk (0.0031 in the LVIS configs, tools/loss_scale.py).
    _C.MODEL.LDA.BALANCED_LOSS_WEIGHT = 2.0
    # Scale of Eq. 9 on the positives: "sampled" multiplies it by (#positives / #sampled
    # proposals), so a positive weighs what it weighs in Fast R-CNN's cross-entropy (a mean
    # over all sampled proposals) and detectron2's learning rates stay valid; "positives"
    # leaves LDALoss's mean over the positives (about 4x larger gradients; detection only).
    _C.MODEL.LDA.LOSS_NORMALIZATION = "sampled"
    # Factor on the foreground/background cross-entropy (detection only, not in the paper).
    _C.MODEL.LDA.FG_BG_LOSS_WEIGHT = 1.0
    # Weight the inter pairs by w_i + w_j (Eq. 8) instead of a plain mean.
    _C.MODEL.LDA.WEIGHTED_INTER = False
    # Constant `alpha` instead of Eq. 6 when >= 0 (the paper's grid-search ablation).
    _C.MODEL.LDA.FIXED_ALPHA = -1.0
    # "official" (w_y = 1/(C n_y), summed risk, delta acc in percent), "normalized", or
    # "calibrated" (BALANCED_LOSS_WEIGHT = coefficient of the normalised balanced risk,
    # independent of batch, #GPUs and N; the LVIS configs); see lda_core.loss.
    _C.MODEL.LDA.SCALING = "official"
    # Inference score p(fg) * softmax(.)(c) with h ("balanced", the paper) or h' ("unbalanced").
    _C.MODEL.LDA.SCORE_MODE = "balanced"


def add_evaluation_config(cfg):
    """TEST.LVIS_EVALUATOR: which evaluator train_net.py runs on LVIS-format test sets."""
    # "sharded" (lda_det.evaluation.ShardedLVISEvaluator): each rank writes its predictions to a shard file
    # under OUTPUT_DIR/inference/lvis_shards/, rank 0 evaluates them from disk with faster-coco-eval's LVIS
    # mode one category chunk at a time (the metrics equal lvis-api's; memory and time fit LVIS v1 val), and
    # `--eval-only --eval-from-shards` evaluates them again without the model. "detectron2": detectron2's
    # LVISEvaluator (all predictions pickled to rank 0, lvis-api on all of them at once; evaluates proposals too).
    cfg.TEST.LVIS_EVALUATOR = "sharded"


def add_seesaw_config(cfg):
    """Add the MODEL.SEESAW.* keys of Seesaw Loss (Wang et al., CVPR 2021; lda_det.seesaw)."""
    _C = cfg
    _C.MODEL.SEESAW = CN()
    # Exponent `p` of the mitigation factor M_ij = (N_j / N_i)^p (paper Sec. 3, "mitigation factor"; 0.8 in mmdet's
    # mmdet/models/losses/seesaw_loss.py and every configs/seesaw_loss/*.py).
    _C.MODEL.SEESAW.P = 0.8
    # Exponent `q` of the compensation factor C_ij = (sigma_j / sigma_i)^q (paper Sec. 3, "compensation
    # factor"; 2.0 in mmdet).
    _C.MODEL.SEESAW.Q = 2.0
    # Floor on sigma_i in sigma_j / sigma_i (mmdet SeesawLoss `eps`, default 1e-2; not in the paper).
    _C.MODEL.SEESAW.EPS = 1e-2
    # Factor on both classification terms, classes and objectness (mmdet configs: loss_weight=1.0).
    _C.MODEL.SEESAW.LOSS_WEIGHT = 1.0
    # Normalised-linear (cosine) classifier for the C + 2 logits (the paper's normalised linear activation;
    # mmdet: cls_predictor_cfg=dict(type='NormedLinear', tempearture=20) in every seesaw config, the
    # R50 1x ones included); False: a plain Linear as Fast R-CNN's.
    _C.MODEL.SEESAW.COSINE_CLASSIFIER = True
    # Temperature `tau` scaling the cosine logits (mmdet NormedLinear tempearture=20).
    _C.MODEL.SEESAW.TEMPERATURE = 20.0


def add_federated_config(cfg):
    """MODEL.FEDERATED.*: the federated loss's head "FederatedROIHeads" (lda_det.federated); the loss's own keys
    are detectron2's MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS / FED_LOSS_*."""
    _C = cfg
    _C.MODEL.FEDERATED = CN()
    # Prior probability `pi` of the sigmoid classifiers at initialisation, bias -log((1 - pi) / pi) = -4.595
    # (CenterNet2 centernet/config.py ROI_BOX_HEAD.PRIOR_PROB 0.01, custom_fast_rcnn.py); detectron2's bias is 0.
    _C.MODEL.FEDERATED.PRIOR_PROB = 0.01


def add_decoupling_config(cfg):
    """Keys of two-stage training (cRT: Kang et al., "Decoupling Representation and Classifier for
    Long-Tailed Recognition", ICLR 2020, Sec. 3/4): load MODEL.WEIGHTS, re-initialise and re-train only
    the classifier. The class-balanced sampler is DATALOADER.SAMPLER_TRAIN "ClassBalancedTrainingSampler"."""
    _C = cfg
    # Parameter-name prefixes (as in model.named_parameters()) left trainable; every other parameter is
    # frozen and BatchNorm layers left without a trainable parameter use their running statistics.
    # Empty (default): all parameters train, as in plain detectron2.
    _C.MODEL.TRAINABLE_PARAMETERS = ()
    # Parameter-name prefixes that keep their fresh initialisation instead of MODEL.WEIGHTS' values
    # (cRT's "randomly re-initialize the classifier", Kang et al. Sec. 4). Ignored when resuming.
    _C.MODEL.REINITIALIZED_PARAMETERS = ()


def add_eql_config(cfg):
    """MODEL.EQL.*: the Equalization Loss (Tan et al., CVPR 2020), ROI head "EQLROIHeads"."""
    _C = cfg
    _C.MODEL.EQL = CN()
    # Frequency threshold `lambda` of T_lambda(f_j) in w_j = 1 - E(r) T_lambda(f_j) (1 - y_j) (Eq. 3-5):
    # classes whose image frequency f_j (images containing j / annotated training images) is below it
    # get no negative gradient from foreground proposals. 1.76e-3: the paper's value for LVIS v0.5 (Sec. 4.3); eql.detectron2 uses 0.00177 (v0.5);
    # for LVIS v1 the official eqlv2 repo uses 0.0011 (configs/end2end/eql_r50_8x2_1x.py).
    _C.MODEL.EQL.LAMBDA = 1.76e-3
    # Prior probability `pi` of the C sigmoid classifiers at initialisation, bias -log((1 - pi) / pi)
    # (official eql.detectron2, projects/EQL/eql/cfg.py PRIOR_PROB = 0.001, fast_rcnn.py).
    _C.MODEL.EQL.PRIOR_PROB = 0.001


def add_eqlv2_config(cfg):
    """MODEL.EQLV2.*: Equalization Loss v2 (Tan et al., CVPR 2021), ROI head "EQLv2ROIHeads"."""
    _C = cfg
    _C.MODEL.EQLV2 = CN()
    # `gamma` of the mapping f(x) = 1 / (1 + exp(-gamma (x - mu))) of the accumulated positive /
    # negative gradient ratio g_j to the negative weight (official eqlv2 mmdet/models/losses/eqlv2.py).
    _C.MODEL.EQLV2.GAMMA = 12.0
    # `mu` of the mapping f (official default 0.8).
    _C.MODEL.EQLV2.MU = 0.8
    # `alpha` of the positive weight 1 + alpha (1 - f(g_j)) (official default 4).
    _C.MODEL.EQLV2.ALPHA = 4.0
    # Inference score sigmoid(z_j) x (1 - sigmoid(z_bg)): the background column acts as objectness, as the
    # official get_activation does (test_with_obj=True by default); False scores sigmoid(z_j) alone.
    _C.MODEL.EQLV2.TEST_WITH_OBJ = True
    # Prior probability `pi` of all C + 1 sigmoid classifiers at initialisation, bias -log((1 - pi) / pi) = -6.907
    # (official eqlv2 mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py init_weights: bias_init_with_prob(0.001));
    # detectron2's bias of 0 would start 1,204 columns at p = 0.5, a first loss of ~1204 log 2 per proposal.
    _C.MODEL.EQLV2.PRIOR_PROB = 0.001
