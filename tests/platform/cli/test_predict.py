from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.models.postprocess import PostProcess
from sparse_rcnn.platform.checkpoints.native import save_checkpoint
from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.data.categories import COCO_CATEGORY_IDS
from sparse_rcnn.platform.data.image_io import load_image
from sparse_rcnn.platform.data.synthetic import make_synthetic, split_paths
from sparse_rcnn.platform.data.transforms import boxes_to_original, pad_batch
from sparse_rcnn.platform.data.transforms import test_transform as transform
from sparse_rcnn.platform.evaluation.detections import load_detections

CFG = PRESETS["tiny"].replace(num_proposals=8, num_stages=2, test_scale=(256, 160))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    make_synthetic(tmp / "syn", num_images=5, seed=1, val_fraction=0.4, min_size=160,
                   max_size=200)  # fmt: skip
    torch.manual_seed(0)
    model = SparseRCNN(CFG).eval()
    ckpt = tmp / "tiny.pt"
    save_checkpoint(ckpt, model.state_dict(), CFG, {"source": "test"})
    ann, images = split_paths(tmp / "syn", "val")
    return tmp, ckpt, ann, images, model


def test_predict_writes_coco_results_in_original_pixels(setup):
    tmp, ckpt, ann, images, model = setup
    out = tmp / "dets.parquet"
    # Batch size 1: padding depends on the batch, and the oracle below pads one image alone.
    rc = main(["predict", "--checkpoint", str(ckpt), "--images", str(images), "--ann", str(ann),
               "--out", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0
    dets = load_detections(out)
    info = json.loads(ann.read_text())
    ids = sorted(im["id"] for im in info["images"])
    assert sorted(set(dets.image_id.tolist())) == ids
    assert len(dets) == len(ids) * CFG.num_proposals  # k = num_proposals per image
    # One image recomputed by hand: transform, forward, top-k, back to the file's pixels.
    im = info["images"][0]
    image = load_image(images / im["file_name"])
    x, meta = transform(image, im["id"], CFG.test_scale)
    batch, sizes = pad_batch([x])
    with torch.no_grad():
        det = PostProcess(CFG.num_proposals)(model(batch, sizes))[0]
    boxes = boxes_to_original(det.boxes, meta)
    rows = dets.image_id == im["id"]
    order = np.argsort(-dets.score[rows], kind="stable")
    np.testing.assert_allclose(dets.score[rows][order], det.scores.numpy(), rtol=1e-5, atol=1e-6)
    xywh = dets.bbox[rows][order]
    np.testing.assert_allclose(xywh[:, :2], boxes[:, :2].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(xywh[:, 2:], (boxes[:, 2:] - boxes[:, :2]).numpy(), rtol=1e-4,
                               atol=1e-3)  # fmt: skip
    assert set(dets.category_id.tolist()) <= set(COCO_CATEGORY_IDS)
    out2 = tmp / "dets2.parquet"
    rc = main(["predict", "--checkpoint", str(ckpt), "--images", str(images), "--ann", str(ann),
               "--out", str(out2), "--batch-size", "2", "--no-progress"])  # fmt: skip
    dets2 = load_detections(out2)
    assert rc == 0 and sorted(dets2.image_id.tolist()) == sorted(dets.image_id.tolist())


def test_predict_json_and_numeric_file_names(setup):
    tmp, ckpt, ann, images, _ = setup
    out = tmp / "dets.json"
    files = sorted(images.iterdir())[:1]
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(files[0]), "--out",
                 str(out), "--no-progress"]) == 0  # fmt: skip
    results = json.loads(out.read_text())
    assert len(results) == CFG.num_proposals
    assert {r["image_id"] for r in results} == {int(files[0].stem)}
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_predict_bad_inputs_name_the_problem(setup, capsys):
    tmp, ckpt, ann, images, _ = setup
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(images), "--out",
                 str(tmp / "d.csv")]) == 2  # fmt: skip
    assert "--out must end in .parquet or .json" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tmp / "missing.pt"), "--images", str(images),
                 "--out", str(tmp / "d.json")]) == 2  # fmt: skip
    assert "missing.pt" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp / "nope"), "--out",
                 str(tmp / "d.json")]) == 2  # fmt: skip
    assert "nope" in capsys.readouterr().err
