"""A synthetic mmdetection checkpoint built from the reference key table (spec section 4),
independently of our model code: if our module layout drifts from mmdetection's, loading it
fails."""

from __future__ import annotations

import pytest
import torch

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (c,)) for k in BN}


def mmdet_shapes(depth: int, num_proposals: int) -> dict[str, tuple[int, ...]]:
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    s: dict[str, tuple[int, ...]] = {"backbone.conv1.weight": (64, 3, 7, 7)}
    s |= _bn("backbone.bn1", 64)
    cin = 64
    for layer, (p, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for b in range(n):
            pre = f"backbone.layer{layer}.{b}"
            s[f"{pre}.conv1.weight"] = (p, cin, 1, 1)
            s |= _bn(f"{pre}.bn1", p)
            s[f"{pre}.conv2.weight"] = (p, p, 3, 3)
            s |= _bn(f"{pre}.bn2", p)
            s[f"{pre}.conv3.weight"] = (4 * p, p, 1, 1)
            s |= _bn(f"{pre}.bn3", 4 * p)
            if b == 0:
                s[f"{pre}.downsample.0.weight"] = (4 * p, cin, 1, 1)
                s |= _bn(f"{pre}.downsample.1", 4 * p)
            cin = 4 * p
    for i, c in enumerate((256, 512, 1024, 2048)):
        s[f"neck.lateral_convs.{i}.conv.weight"] = (256, c, 1, 1)
        s[f"neck.lateral_convs.{i}.conv.bias"] = (256,)
        s[f"neck.fpn_convs.{i}.conv.weight"] = (256, 256, 3, 3)
        s[f"neck.fpn_convs.{i}.conv.bias"] = (256,)
    s["rpn_head.init_proposal_bboxes.weight"] = (num_proposals, 4)
    s["rpn_head.init_proposal_features.weight"] = (num_proposals, 256)
    stage = {
        "attention.attn.in_proj_weight": (768, 256),
        "attention.attn.in_proj_bias": (768,),
        "attention.attn.out_proj.weight": (256, 256),
        "attention.attn.out_proj.bias": (256,),
        "attention_norm.weight": (256,),
        "attention_norm.bias": (256,),
        "instance_interactive_conv.dynamic_layer.weight": (32768, 256),
        "instance_interactive_conv.dynamic_layer.bias": (32768,),
        "instance_interactive_conv.norm_in.weight": (64,),
        "instance_interactive_conv.norm_in.bias": (64,),
        "instance_interactive_conv.norm_out.weight": (256,),
        "instance_interactive_conv.norm_out.bias": (256,),
        "instance_interactive_conv.fc_layer.weight": (256, 12544),
        "instance_interactive_conv.fc_layer.bias": (256,),
        "instance_interactive_conv.fc_norm.weight": (256,),
        "instance_interactive_conv.fc_norm.bias": (256,),
        "instance_interactive_conv_norm.weight": (256,),
        "instance_interactive_conv_norm.bias": (256,),
        "ffn.layers.0.0.weight": (2048, 256),
        "ffn.layers.0.0.bias": (2048,),
        "ffn.layers.1.weight": (256, 2048),
        "ffn.layers.1.bias": (256,),
        "ffn_norm.weight": (256,),
        "ffn_norm.bias": (256,),
        "cls_fcs.0.weight": (256, 256),
        "cls_fcs.1.weight": (256,),
        "cls_fcs.1.bias": (256,),
        "fc_cls.weight": (80, 256),
        "fc_cls.bias": (80,),
        "fc_reg.weight": (4, 256),
        "fc_reg.bias": (4,),
    }
    for k in (0, 3, 6):
        stage[f"reg_fcs.{k}.weight"] = (256, 256)
        stage[f"reg_fcs.{k + 1}.weight"] = (256,)
        stage[f"reg_fcs.{k + 1}.bias"] = (256,)
    assert len(stage) == 40
    for i in range(6):
        s |= {f"roi_head.bbox_head.{i}.{k}": v for k, v in stage.items()}
    return s


def make_state_dict(depth: int, num_proposals: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in mmdet_shapes(depth, num_proposals).items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000, dtype=torch.int64)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.02
    return sd


def mmdet_checkpoint(depth: int, num_proposals: int, seed: int = 0) -> dict:
    meta = {"mmdet_version": "2.8.0", "CLASSES": ("person",) * 80, "epoch": 12, "config": "..."}
    return {"meta": meta, "state_dict": make_state_dict(depth, num_proposals, seed)}


@pytest.fixture(scope="session")
def r50_checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sparse_rcnn_r50_fpn_1x_coco.pth"
    torch.save(mmdet_checkpoint(50, 100), path)
    return path


@pytest.fixture(scope="session")
def make_sd():
    """Factory: ``make_sd(depth, num_proposals, seed=0)`` -> reference-layout state dict."""
    return make_state_dict


@pytest.fixture(scope="session")
def key_shapes():
    """Factory: ``key_shapes(depth, num_proposals)`` -> {key: shape} of the reference table."""
    return mmdet_shapes
