import pytest
import timm
import torch
from torch import nn

from lda_cls import build_model, deploy_state_dict, get_cfg


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_resnet32_cifar_is_the_standard_option_a_model():
    # Official LDA / LDAM / BBN ResNet-32: no shortcut parameters. Hand count of the trunk:
    # stem 3*16*9 + BN 32; stage 1: 5 * (2 * 16*16*9 + 2 * 32);
    # stage 2: (16*32*9 + 32*32*9 + 128) + 4 * (2 * 32*32*9 + 128);
    # stage 3: (32*64*9 + 64*64*9 + 256) + 4 * (2 * 64*64*9 + 256).
    expected = (432 + 32) + 5 * (4608 + 64) + (4608 + 9216 + 128) + 4 * (18432 + 128) \
        + (18432 + 36864 + 256) + 4 * (73728 + 256)
    trunk = timm.create_model("resnet32_cifar", num_classes=0)
    assert count(trunk) == expected == 463504  # "0.46M" of the papers
    assert count(timm.create_model("resnet32_cifar", num_classes=10)) == 463504 + 650
    x = torch.randn(2, 3, 32, 32)
    assert trunk(x).shape == (2, 64)
    assert trunk.forward_features(x).shape == (2, 64, 8, 8)
    assert torch.equal(trunk.forward_head(trunk.forward_features(x), pre_logits=True), trunk(x))
    assert count(timm.create_model("resnet8_cifar", num_classes=0)) < count(trunk)


def test_option_a_shortcut_is_the_subsampled_identity_zero_padded():
    block = timm.create_model("resnet32_cifar", num_classes=0).layer2[0].eval()
    x = torch.randn(2, 16, 8, 8)
    # With the residual branch silenced (bn2 scale and shift 0), the block is relu(shortcut(x)).
    nn.init.zeros_(block.bn2.weight)
    expected = torch.zeros(2, 32, 4, 4)
    expected[:, 8:24] = x[:, :, ::2, ::2]  # 16 new channels: 8 zero channels on each side
    assert torch.equal(block(x), torch.relu(expected))


def test_kaiming_fan_in_init_of_the_official_model():
    torch.manual_seed(0)
    stem = timm.create_model("resnet32_cifar", num_classes=0).conv1.weight  # 16 x 3 x 3 x 3
    # fan_in = 3*9 = 27 -> std sqrt(2/27) = 0.272; fan_out = 16*9 = 144 would give 0.118.
    assert stem.std().item() == pytest.approx((2 / 27) ** 0.5, rel=0.1)
    fc = timm.create_model("resnet32_cifar", num_classes=100).fc.weight  # 100 x 64
    assert fc.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.1)


def test_lda_head_outputs_and_names():
    cfg = get_cfg()
    model = build_model(cfg, num_classes=10).eval()
    head = model.head
    assert isinstance(head.balanced, nn.Linear) and isinstance(head.unbalanced, nn.Linear)
    assert isinstance(head.projection, nn.Linear) and head.projection.out_features == 128
    x = torch.randn(3, 1, 8, 8)
    out = model(x)
    assert set(out) == {"logits", "unbalanced_logits", "features", "projection"}
    assert out["features"].shape == (3, model.backbone.num_features)
    assert torch.allclose(out["logits"], head.balanced(out["features"]))
    assert torch.allclose(out["unbalanced_logits"], head.unbalanced(out["features"]))
    assert torch.allclose(out["projection"], head.projection(out["features"]))
    # Deployment weights: backbone + h only.
    keys = deploy_state_dict(model).keys()
    assert any(k.startswith("backbone.") for k in keys) and "head.balanced.weight" in keys
    assert not any(k.startswith(("head.unbalanced", "head.projection")) for k in keys)

    cfg.METHOD = "ce"
    ce = build_model(cfg, num_classes=10)
    assert ce.head.unbalanced is None and ce.head.projection is None
    assert set(ce(x)) == {"logits", "features"}
    cfg.METHOD, cfg.MODEL.PROJECTION.ENABLED, cfg.MODEL.PROJECTION.DIM = "lda", True, 32
    assert build_model(cfg, 10).head.projection.out_features == 32
    cfg.MODEL.PROJECTION.ENABLED = False
    assert "projection" not in build_model(cfg, 10)(x)


def test_places_rule_loads_local_weights_and_trains_only_the_last_block(tmp_path):
    # resnet18 stands in for resnet152: same timm ResNet class, same rule, 1/5 of the size.
    reference = timm.create_model("resnet18", num_classes=1000)
    weights = tmp_path / "resnet18_imagenet.pth"
    torch.save(reference.state_dict(), weights)
    cfg = get_cfg()
    cfg.MODEL.BACKBONE, cfg.MODEL.IN_CHANS = "resnet18", 3
    cfg.MODEL.PRETRAINED_FILE, cfg.MODEL.FREEZE = str(weights), "all_but_last_block"
    model = build_model(cfg, num_classes=5)
    backbone_state = model.backbone.state_dict()
    assert torch.equal(backbone_state["conv1.weight"], reference.state_dict()["conv1.weight"])
    assert torch.equal(backbone_state["layer4.1.conv2.weight"], reference.state_dict()["layer4.1.conv2.weight"])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("backbone.layer4.1.", "head.")) for n in trainable)
    assert {n for n, _ in model.backbone.layer4[1].named_parameters(prefix="backbone.layer4.1")} <= trainable
    assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == \
        count(model.backbone.layer4[1]) + count(model.head)
    # MODEL.FROZEN_BN "train" (the default and the official trainer's): the frozen layers' BatchNorms
    # normalise with batch statistics and update their running estimates; their affine parameters stay put.
    assert cfg.MODEL.FROZEN_BN == "train" and isinstance(model.backbone.bn1, nn.BatchNorm2d)
    assert not model.backbone.bn1.weight.requires_grad
    model.train()
    images = torch.randn(2, 3, 64, 64)
    stem = model.backbone.conv1(images)
    batch_mean = stem.mean(dim=(0, 2, 3))
    normalised = (stem - batch_mean[None, :, None, None]) / torch.sqrt(
        stem.var(dim=(0, 2, 3), unbiased=False)[None, :, None, None] + model.backbone.bn1.eps)
    bn = model.backbone.bn1
    expected = normalised * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    before = bn.running_mean.clone()
    assert torch.allclose(bn(stem), expected, atol=1e-4)
    assert torch.allclose(bn.running_mean, 0.9 * before + 0.1 * batch_mean, atol=1e-5)
    # "frozen": FrozenBatchNorm2d, the ImageNet statistics stay put in training mode.
    cfg.MODEL.FROZEN_BN = "frozen"
    model = build_model(cfg, num_classes=5).train()
    before = model.backbone.bn1.running_mean.clone()
    model(images)
    assert torch.equal(model.backbone.bn1.running_mean, before)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable
    cfg.MODEL.FROZEN_BN = "imagenet"
    with pytest.raises(ValueError, match="MODEL.FROZEN_BN"):
        build_model(cfg, 5)
    cfg.MODEL.FROZEN_BN = "train"

    cfg.MODEL.PRETRAINED_FILE = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(cfg, 5)
    cfg.MODEL.PRETRAINED_FILE, cfg.MODEL.BACKBONE, cfg.MODEL.IN_CHANS = "", "resnet8_cifar", 1
    cfg.MODEL.FREEZE = "everything"
    with pytest.raises(ValueError, match="MODEL.FREEZE"):
        build_model(cfg, 5)


def test_imagenet_lt_resnext_starts_its_last_block_bns_at_one_as_the_official_model():
    from lda_cls.train import build_parser, setup_cfg

    cfg = setup_cfg(build_parser().parse_args(["--dataset", "imagenet_lt"]))
    assert cfg.MODEL.ZERO_INIT_LAST is False
    model = build_model(cfg, num_classes=10)
    last_bns = [block.bn3.weight for stage in (model.backbone.layer1, model.backbone.layer4) for block in stage]
    assert all(torch.equal(w, torch.ones_like(w)) for w in last_bns)
    # timm's default (the key's default) zeroes them.
    cfg.defrost()
    cfg.MODEL.BACKBONE, cfg.MODEL.ZERO_INIT_LAST = "resnet18", True
    assert torch.equal(build_model(cfg, 10).backbone.layer1[0].bn2.weight, torch.zeros(64))
    cfg.MODEL.ZERO_INIT_LAST = False
    assert torch.equal(build_model(cfg, 10).backbone.layer1[0].bn2.weight, torch.ones(64))
    cfg.MODEL.BACKBONE = "mobilenetv3_small_050"  # no zero_init_last argument
    with pytest.raises(ValueError, match="MODEL.ZERO_INIT_LAST"):
        build_model(cfg, 10)
