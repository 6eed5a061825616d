import pytest
import timm
import torch
from torch import nn

from lda_cls import build_model, deploy_state_dict, get_cfg


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_resnet32_cifar_is_registered_with_the_expected_size():
    model = timm.create_model("resnet32_cifar", num_classes=10)
    # Hand count: stem 3*16*9 + BN 32; stage 1: 5 * (2 * 16*16*9 + 2 * 32);
    # stage 2: (16*32*9 + 32*32*9 + 128 + 16*32 + 64) + 4 * (2 * 32*32*9 + 128);
    # stage 3: (32*64*9 + 64*64*9 + 256 + 32*64 + 128) + 4 * (2 * 64*64*9 + 256); fc 64*10 + 10.
    expected = (432 + 32) + 5 * (4608 + 64) + (4608 + 9216 + 128 + 512 + 64) + 4 * (18432 + 128) \
        + (18432 + 36864 + 256 + 2048 + 128) + 4 * (73728 + 256) + 650
    assert count(model) == expected == 466906  # "0.46M" of the papers
    trunk = timm.create_model("resnet32_cifar", num_classes=0)
    x = torch.randn(2, 3, 32, 32)
    assert trunk(x).shape == (2, 64)
    assert trunk.forward_features(x).shape == (2, 64, 8, 8)
    assert torch.equal(trunk.forward_head(trunk.forward_features(x), pre_logits=True), trunk(x))
    assert count(timm.create_model("resnet8_cifar", num_classes=0)) < count(trunk)


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
    # Frozen BatchNorms keep their ImageNet statistics in training mode.
    model.train()
    before = model.backbone.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.backbone.bn1.running_mean, before)

    cfg.MODEL.PRETRAINED_FILE = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(cfg, 5)
    cfg.MODEL.PRETRAINED_FILE, cfg.MODEL.BACKBONE, cfg.MODEL.IN_CHANS = "", "resnet8_cifar", 1
    cfg.MODEL.FREEZE = "everything"
    with pytest.raises(ValueError, match="MODEL.FREEZE"):
        build_model(cfg, 5)
