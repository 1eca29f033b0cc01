from __future__ import annotations

import collections
import hashlib

import pytest
import torch

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.platform.checkpoints.mmdet import (
    CheckpointError,
    infer_model_config,
    load_state_dict_strict,
)
from sparse_rcnn.platform.checkpoints.native import convert_mmdet_checkpoint, load_model


@pytest.mark.parametrize(
    "depth,proposals,preset,keys",
    [
        (50, 100, "r50_fpn_1x", 576),
        (50, 300, "r50_fpn_300_crop_ms_3x", 576),
        (101, 100, "r101_fpn_ms_3x", 882),
        (101, 300, "r101_fpn_300_crop_ms_3x", 882),
    ],
)
def test_reference_layout_loads_strictly(make_sd, depth, proposals, preset, keys):
    sd = make_sd(depth, proposals)
    assert len(sd) == keys
    cfg = infer_model_config(sd)
    assert cfg == PRESETS[preset]
    model = SparseRCNN(cfg)
    load_state_dict_strict(model, sd)  # raises on any missing/unexpected key or shape
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def test_loaded_tensors_drive_the_right_modules(r50_checkpoint_file):
    model, provenance = load_model(r50_checkpoint_file)
    sd = torch.load(r50_checkpoint_file, weights_only=True)["state_dict"]
    feats = {}
    head = model.roi_head.bbox_head[2]
    head.cls_fcs.register_forward_hook(lambda m, i, o: feats.setdefault("cls", o))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 128), torch.tensor([[96, 128]]))
    w = sd["roi_head.bbox_head.2.fc_cls.weight"]
    b = sd["roi_head.bbox_head.2.fc_cls.bias"]
    manual = feats["cls"] @ w.t() + b  # (N, 80)
    torch.testing.assert_close(out.stages[2].logits[0], manual, rtol=1e-5, atol=1e-5)
    assert provenance["source_format"] == "mmdetection"


def test_shape_mismatch_names_key_and_both_shapes(make_sd):
    sd = make_sd(50, 100)
    sd["roi_head.bbox_head.3.fc_cls.weight"] = torch.zeros(81, 256)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(SparseRCNN(PRESETS["r50_fpn_1x"]), sd)
    assert "roi_head.bbox_head.3.fc_cls.weight: checkpoint (81, 256) vs model (80, 256)" in str(
        e.value
    )


def test_other_architecture_is_rejected_with_names(make_sd):
    sd = make_sd(50, 100)
    with pytest.raises(CheckpointError, match="backbone.layer3"):
        # an R-50 checkpoint into an R-101 model
        load_state_dict_strict(SparseRCNN(PRESETS["r101_fpn_ms_3x"]), sd)
    faster_rcnn = {k: v for k, v in sd.items() if k.startswith(("backbone.", "neck."))}
    faster_rcnn["rpn_head.rpn_conv.weight"] = torch.zeros(256, 256, 3, 3)
    with pytest.raises(CheckpointError, match="not a Sparse R-CNN checkpoint"):
        infer_model_config(faster_rcnn)


def test_expected_preset_mismatch_fails(r50_checkpoint_file):
    with pytest.raises(CheckpointError, match="rpn_head.init_proposal_bboxes.weight: checkpoint"):
        load_model(r50_checkpoint_file, expect=PRESETS["r50_fpn_300_crop_ms_3x"])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"x": _Evil()}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_model(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_model(bad)


def test_convert_writes_config_and_provenance(r50_checkpoint_file, tmp_path):
    out = tmp_path / "r50.pt"
    cfg = convert_mmdet_checkpoint(r50_checkpoint_file, out)
    assert cfg == PRESETS["r50_fpn_1x"]
    obj = torch.load(out, weights_only=True)
    assert obj["format"] == "sparse_rcnn_platform/1"
    assert obj["model_config"]["backbone_depth"] == 50
    digest = hashlib.sha256(r50_checkpoint_file.read_bytes()).hexdigest()
    assert obj["provenance"] == {
        "source": r50_checkpoint_file.name,
        "sha256": digest,
        "source_format": "mmdetection",
        "mmdet_version": "2.8.0",
    }
    model, provenance = load_model(out)
    src = torch.load(r50_checkpoint_file, weights_only=True)["state_dict"]
    own = model.state_dict()
    assert sorted(own) == sorted(src)
    assert all(torch.equal(own[k], src[k]) for k in src)
    assert provenance["sha256"] == digest


def test_key_table_is_the_reference_table(key_shapes):
    # Spec section 4: 318 backbone + 16 neck + 2 rpn_head + 240 roi_head keys for R-50.
    keys = key_shapes(50, 100)
    prefixes = collections.Counter(k.split(".")[0] for k in keys)
    assert prefixes == {"backbone": 318, "neck": 16, "rpn_head": 2, "roi_head": 240}
