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


@pytest.fixture(scope="module")
def corrupt_folder(setup):
    """The val images and one corrupt ``.jpg`` among them."""
    tmp, _, _, images, _ = setup
    folder = tmp / "with_corrupt"
    folder.mkdir()
    for p in sorted(images.iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "000004.jpg").write_bytes(b"not a jpeg")
    return folder


def test_a_corrupt_image_stops_with_its_name(setup, corrupt_folder, tmp_path, cli_error):
    _, ckpt, _, _, _ = setup
    out = tmp_path / "d.json"
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", corrupt_folder, "--out", out,
                    "--no-progress")  # fmt: skip
    assert msg == f"cannot decode image {corrupt_folder / '000004.jpg'}: Unsupported image file"
    assert list(tmp_path.iterdir()) == []


def test_skip_bad_images_lists_and_counts_them(setup, corrupt_folder, tmp_path, capsys):
    _, ckpt, _, _, _ = setup
    out = tmp_path / "d.json"
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(corrupt_folder), "--out",
                 str(out), "--no-progress", "--skip-bad-images"]) == 0  # fmt: skip
    captured = capsys.readouterr()
    bad = corrupt_folder / "000004.jpg"
    assert captured.err.splitlines() == [
        f"skipped: cannot decode image {bad}: Unsupported image file"
    ]
    n = 2 * CFG.num_proposals  # the two readable val images
    assert captured.out.splitlines()[-1] == (
        f"wrote {n} detections for 2 images to {out} (1 unreadable images skipped)"
    )
    assert {r["image_id"] for r in json.loads(out.read_text())} == {3, 5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]


def test_skip_bad_images_with_nothing_readable_writes_nothing(setup, tmp_path, capsys):
    _, ckpt, _, _, _ = setup
    (tmp_path / "1.jpg").write_bytes(b"")
    out = tmp_path / "d.json"
    assert main(["predict", "--checkpoint", str(ckpt), "--images", str(tmp_path / "1.jpg"),
                 "--out", str(out), "--no-progress", "--skip-bad-images"]) == 2  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        f"skipped: image file {tmp_path / '1.jpg'} is empty",
        "sparse-rcnn predict: error: none of the 1 images could be read; nothing written",
    ]
    assert not out.exists()


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("nodir/d.json", "--out {tmp}/nodir/d.json: folder {tmp}/nodir does not exist"),
        ("adir.json", "--out {tmp}/adir.json is a directory; give a file name"),
        ("afile/d.json", "--out {tmp}/afile/d.json: {tmp}/afile is a file, not a folder"),
    ],
)
def test_the_output_location_is_checked_before_the_model_loads(
    setup, tmp_path, cli_error, out, message
):
    _, _, _, images, _ = setup
    (tmp_path / "adir.json").mkdir()
    (tmp_path / "afile").write_text("x")
    # The checkpoint does not exist: the --out error proves the check comes first.
    msg = cli_error("predict", "--checkpoint", tmp_path / "missing.pt", "--images", images,
                    "--out", tmp_path / out)  # fmt: skip
    assert msg == message.format(tmp=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.json", "afile"]


def test_cuda_without_a_gpu_is_one_line(setup, tmp_path, cli_error, monkeypatch):
    _, ckpt, _, images, _ = setup
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", images, "--out",
                    tmp_path / "d.json", "--device", "cuda")  # fmt: skip
    assert msg == "--device cuda: no CUDA GPU is available here; use --device cpu"


def test_an_unknown_device_is_one_line(setup, tmp_path, cli_error):
    _, ckpt, _, images, _ = setup
    for device in ("banana", "meta"):
        msg = cli_error("predict", "--checkpoint", ckpt, "--images", images, "--out",
                        tmp_path / "d.json", "--device", device)  # fmt: skip
        assert msg == f"--device '{device}' is not supported; use cpu, cuda, cuda:N or mps"


def test_a_bad_annotation_file_is_named(setup, tmp_path, cli_error):
    _, ckpt, _, images, _ = setup
    ann = tmp_path / "ann.json"
    ann.write_text("[1, 2]")
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", images, "--ann", ann, "--out",
                    tmp_path / "d.json")  # fmt: skip
    assert msg == (
        f"annotation file {ann} is not COCO-shaped: it needs 'images' with 'id' and "
        "'file_name', and 'categories' with distinct 'id' and 'name'"
    )


def test_a_folder_without_images_and_a_non_image_file(setup, tmp_path, cli_error):
    _, ckpt, _, _, _ = setup
    (tmp_path / "empty").mkdir()
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", tmp_path / "empty", "--out",
                    tmp_path / "d.json")  # fmt: skip
    assert msg == f"no images (.jpg, .jpeg, .png, .bmp, .webp) found in {tmp_path / 'empty'}"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", notes, "--out",
                    tmp_path / "d.json", "--no-progress")  # fmt: skip
    assert msg == f"cannot decode image {notes}: Unsupported image file"
    assert not (tmp_path / "d.json").exists()


def test_a_text_file_as_checkpoint(setup, tmp_path, cli_error):
    _, _, _, images, _ = setup
    ckpt = tmp_path / "model.pth"
    ckpt.write_text("hello\n")
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", images, "--out",
                    tmp_path / "d.json")  # fmt: skip
    assert msg == f"{ckpt}: not a PyTorch checkpoint (torch.save file)"


def test_annotation_categories_that_fit_no_model_classes(setup, tmp_path, cli_error):
    _, ckpt, ann, images, _ = setup
    data = json.loads(ann.read_text())
    data["categories"] = [{"id": 500, "name": "x"}]
    other = tmp_path / "ann.json"
    other.write_text(json.dumps(data))
    msg = cli_error("predict", "--checkpoint", ckpt, "--images", images, "--ann", other, "--out",
                    tmp_path / "d.json")  # fmt: skip
    assert msg == (
        f"--ann {other}: its 1 categories are neither the model's 80 classes nor a subset of "
        "COCO's category ids"
    )
