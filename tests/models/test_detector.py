from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparse_rcnn.models.box_ops import decode_deltas
from sparse_rcnn.models.config import PRESETS, ModelConfig
from sparse_rcnn.models.detector import SparseRCNN, count_parameters
from sparse_rcnn.models.dynamic_conv import DynamicConv
from sparse_rcnn.models.postprocess import PostProcess
from sparse_rcnn.models.roi_extractor import map_roi_levels

TINY = PRESETS["tiny"]


def test_reference_parameter_counts():
    # Totals computed from the reference checkpoint shapes (spec section 1.10).
    assert count_parameters(SparseRCNN(PRESETS["r50_fpn_1x"])) == 106_290_888
    r101 = count_parameters(SparseRCNN(PRESETS["r101_fpn_ms_3x"]))
    assert round(r101 / 1e6, 1) == 125.3
    assert count_parameters(SparseRCNN(PRESETS["r50_fpn_300_crop_ms_3x"])) == 106_290_888 + 200 * (
        4 + 256
    )


def test_roi_level_thresholds():
    sides = torch.tensor([10.0, 111.9, 112.0, 223.9, 224.0, 447.9, 448.0, 2000.0])
    rois = torch.stack([torch.zeros(8), torch.zeros(8), torch.zeros(8), sides, sides], 1)
    assert map_roi_levels(rois, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_decode_deltas_formula_and_clamp():
    prior = torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # w 40, h 80, centre (30, 60)
    d = torch.tensor([[0.2, -0.4, 0.5, 100.0]])
    out = decode_deltas(d, prior)[0]
    cx, cy = 30 + 40 * 0.2 * 0.5, 60 + 80 * -0.4 * 0.5
    w, h = 40 * math.exp(0.5), 80 * math.exp(math.log(1000 / 16))
    torch.testing.assert_close(out, torch.tensor([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))


def test_dynamic_conv_matches_explicit_matrices():
    torch.manual_seed(0)
    c, f, s = 8, 4, 3
    m = DynamicConv(c, f, s).eval()
    prop, roi = torch.randn(2, c), torch.randn(2, c, s, s)
    out = m(prop, roi)
    for k in range(2):
        params = m.dynamic_layer(prop[k])
        p1 = params[: c * f].view(c, f)  # row-major (C x F)
        p2 = params[c * f :].view(f, c)
        x = roi[k].reshape(c, s * s).t()  # (S*S, C), positions row-major
        x = F.relu(F.layer_norm(x @ p1, (f,), m.norm_in.weight, m.norm_in.bias))
        x = F.relu(F.layer_norm(x @ p2, (c,), m.norm_out.weight, m.norm_out.bias))
        y = F.relu(m.fc_norm(m.fc_layer(x.reshape(-1))))
        torch.testing.assert_close(out[k], y, rtol=1e-5, atol=1e-5)


def _images(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, h, w, generator=g) for h, w in sizes]


def _pad(ims, hp, wp):
    batch = torch.zeros(len(ims), 3, hp, wp, dtype=ims[0].dtype)
    for i, im in enumerate(ims):
        batch[i, :, : im.shape[1], : im.shape[2]] = im
    return batch


def test_batched_forward_equals_per_image_forward():
    torch.manual_seed(0)
    # float64, so that the comparison is exact up to rounding and any mixing between images
    # (attention, RoI batch indices, padding) shows.
    model = SparseRCNN(TINY).eval().double()
    sizes = [(160, 224), (128, 192), (160, 160)]
    ims = [im.double() for im in _images(sizes)]
    image_sizes = torch.tensor(sizes)
    with torch.no_grad():
        batched = model(_pad(ims, 160, 224), image_sizes)
        for i, im in enumerate(ims):
            single = model(_pad([im], 160, 224), image_sizes[i : i + 1])
            for sb, ss in zip(batched.stages, single.stages, strict=True):
                torch.testing.assert_close(sb.logits[i], ss.logits[0], rtol=1e-9, atol=1e-9)
                torch.testing.assert_close(sb.boxes[i], ss.boxes[0], rtol=1e-9, atol=1e-9)


def test_initial_proposals_are_the_whole_image_and_shapes():
    model = SparseRCNN(TINY).eval()
    whwh = torch.tensor([[224.0, 160.0, 224.0, 160.0]])
    boxes, feats = model.rpn_head(whwh)
    assert torch.equal(boxes[0], torch.tensor([[0.0, 0.0, 224.0, 160.0]]).expand(32, 4))
    assert feats.shape == (1, 32, 64)
    out = model(torch.randn(1, 3, 160, 224), torch.tensor([[160, 224]]))
    assert len(out.stages) == TINY.num_stages
    assert out.final.logits.shape == (1, 32, 80) and out.final.boxes.shape == (1, 32, 4)


def test_boxes_are_detached_between_stages_but_features_are_not():
    torch.manual_seed(1)
    cfg = TINY.replace(num_stages=2)
    model = SparseRCNN(cfg).train()
    out = model(torch.randn(1, 3, 128, 128), torch.tensor([[128, 128]]))
    # Stage-1 boxes depend on stage-0 boxes only through the detached RoIs: their gradient
    # reaches stage-0's regression branch only via the object features, not the box path.
    out.stages[1].boxes.sum().backward()
    assert model.roi_head.bbox_head[0].fc_reg.weight.grad is None  # box path cut
    assert model.roi_head.bbox_head[0].ffn.layers[1].weight.grad is not None  # features flow
    assert model.rpn_head.init_proposal_features.weight.grad is not None


def test_frozen_stem_and_norm_eval_follow_mmdetection():
    model = SparseRCNN(ModelConfig(backbone_depth=18)).train()
    bb = model.backbone
    assert not any(p.requires_grad for p in bb.conv1.parameters())
    assert not any(p.requires_grad for p in bb.layer1.parameters())
    assert all(p.requires_grad for p in bb.layer2.parameters())  # BN affine of layer2-4 trains
    assert all(not m.training for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d))
    tiny = SparseRCNN(TINY).train()
    assert all(p.requires_grad for p in tiny.backbone.parameters())
    assert all(m.training for m in tiny.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_postprocess_topk_over_proposals_times_classes():
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 1, 2], logits[0, 1, 3], logits[0, 0, 0] = 3.0, 2.0, 1.0
    boxes = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    from sparse_rcnn.models.detector import DetectorOutput, StageOutput

    out = DetectorOutput([StageOutput(logits, boxes)], torch.ones(1, 4))
    det = PostProcess(3)(out)[0]
    assert det.labels.tolist() == [2, 3, 0]
    assert torch.equal(det.boxes, boxes[0, [1, 1, 0]])
    torch.testing.assert_close(det.scores, torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_configs(name):
    cfg = PRESETS[name]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
