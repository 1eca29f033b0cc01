"""COCO JSON files through the typed decoder: the same arrays as the standard library gives,
``None`` (so the standard-library path decides) for anything not plainly typed, and the same
metrics as pycocotools reading the same files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation import coco_json
from sparse_rcnn.platform.evaluation.coco_eval import evaluate
from sparse_rcnn.platform.evaluation.coco_json import decode_instances, decode_results, mapped
from sparse_rcnn.platform.evaluation.detections import Detections, load_detections
from sparse_rcnn.platform.evaluation.ground_truth import GroundTruth, load_ground_truth

DET = {"image_id": 2, "category_id": 1, "score": 0.9, "bbox": [10, 10.5, 20, 1e-3]}
ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 300.5}
GT = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}], "annotations": [ANN]}


def _same_ground_truth(a: GroundTruth, b: GroundTruth) -> None:
    for field in GroundTruth.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field)


def test_results_decode_to_the_standard_librarys_arrays(tmp_path, coco_case):
    _, results = coco_case
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(results))
    cols = decode_results(path.read_bytes())
    assert cols is not None
    ref = Detections.from_coco_results(json.loads(path.read_text()))
    got = load_detections(path)
    for name in ("image_id", "category_id", "score", "bbox"):
        assert getattr(cols, name).dtype == getattr(ref, name).dtype
        np.testing.assert_array_equal(getattr(cols, name), getattr(ref, name))  # bit for bit
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
    assert len(decode_results(b"[]").score) == 0
    assert decode_results(b"[]").bbox.shape == (0, 4)


def test_instances_decode_to_the_standard_librarys_ground_truth(tmp_path, coco_case):
    gt, _ = coco_case
    assert any("ignore" in a for a in gt["annotations"])  # extra fields are skipped
    gt = json.loads(json.dumps(gt))
    gt["annotations"][0].pop("area")  # absent area: the box area
    gt["annotations"][1]["area"] = None  # null area: the box area too
    gt["annotations"][2]["iscrowd"] = True
    gt["annotations"][3]["segmentation"] = [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]
    gt["info"] = {"description": "caf\u00e9", "year": 2017}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt, ensure_ascii=False), encoding="utf-8")
    assert decode_instances(path.read_bytes()) is not None
    _same_ground_truth(load_ground_truth(path), load_ground_truth(gt))
    empty = {"images": [], "annotations": [], "categories": []}
    assert len(decode_instances(json.dumps(empty).encode()).ann_id) == 0


def test_files_read_through_the_decoder_equal_pycocotools(tmp_path, make_case, pycoco):
    gt, results = make_case(9)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(results))
    assert decode_results((tmp_path / "dets.json").read_bytes()) is not None
    got = evaluate(tmp_path / "gt.json", load_detections(tmp_path / "dets.json"))
    np.testing.assert_allclose(got.stats_array(), pycoco(gt, results), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "text",
    [
        b"[{",  # not JSON
        b'{"image_id": 1}',  # not a list
        json.dumps([DET]).replace("0.9", "NaN").encode(),  # accepted by the standard library
        json.dumps([DET | {"score": 1e999}]).encode(),  # likewise (infinity)
        json.dumps([DET | {"image_id": 2.0}]).encode(),  # an integral float id
        json.dumps([DET | {"image_id": True}]).encode(),
        json.dumps([DET | {"category_id": "1"}]).encode(),
        json.dumps([DET | {"score": "0.9"}]).encode(),
        json.dumps([DET | {"score": None}]).encode(),
        json.dumps([DET | {"bbox": [1, 2, 3]}]).encode(),
        json.dumps([DET | {"bbox": [1, 2, 3, "4"]}]).encode(),
        json.dumps([{k: v for k, v in DET.items() if k != "score"}]).encode(),
        b"\xef\xbb\xbf" + json.dumps([DET]).encode(),  # a byte-order mark
        json.dumps([DET | {"name": "caf\u00e9"}], ensure_ascii=False).encode("latin-1"),
    ],
)
def test_results_not_plainly_typed_are_left_to_the_standard_library(text):
    assert decode_results(text) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda g: g["images"].append({"id": 3.0}),
        lambda g: g["images"].append({"file_name": "x.jpg"}),
        lambda g: g["annotations"][0].update(area="300"),
        lambda g: g["annotations"][0].update(iscrowd=None),
        lambda g: g["annotations"][0].update(bbox=[1, 2, 3]),
        lambda g: g["annotations"][0].update(image_id=1.5),
        lambda g: g.pop("categories"),
        lambda g: g.update(annotations={}),
    ],
)
def test_instances_not_plainly_typed_are_left_to_the_standard_library(change):
    gt = json.loads(json.dumps(GT))
    change(gt)
    assert decode_instances(json.dumps(gt).encode()) is None
    assert decode_instances(json.dumps([GT]).encode()) is None


def test_a_file_the_decoder_refuses_is_read_as_before(tmp_path):
    """An integral float id (``2.0``) goes through the standard library and means ``2``."""
    plain, floats = tmp_path / "plain.json", tmp_path / "floats.json"
    plain.write_text(json.dumps([DET]))
    floats.write_text(json.dumps([DET | {"image_id": 2.0, "category_id": 1.0}]))
    assert decode_results(floats.read_bytes()) is None
    a, b = load_detections(plain), load_detections(floats)
    for name in ("image_id", "category_id", "score", "bbox"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    gt = json.loads(json.dumps(GT))
    gt["images"][1]["id"] = 2.0
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    _same_ground_truth(load_ground_truth(tmp_path / "gt.json"), load_ground_truth(GT))


def test_an_empty_file_is_left_to_the_standard_library(tmp_path):
    path = tmp_path / "empty.json"
    path.write_bytes(b"")
    with mapped(path) as data:
        assert decode_results(data) is None and decode_instances(data) is None
    with pytest.raises(ValueError, match="empty.json: not valid JSON"):
        load_detections(path)
    with pytest.raises(ValueError, match="empty.json: not valid JSON"):
        load_ground_truth(path)


@pytest.mark.parametrize("chunk_bytes", [1, 50, 1 << 16])
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"note": "a }, { in a string"},  # a cut inside a string cannot decode
        {"attrs": {"a": {"b": 1}, "c": 2}},  # nor one between objects nested in a detection
        {"parts": [{"a": 1}, {"b": 2}]},
    ],
)
def test_results_cut_into_pieces_decode_to_the_whole_list(monkeypatch, chunk_bytes, extra):
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    ids, scores, boxes = rng.integers(1, 9, 40), rng.random(40), rng.random((40, 4)) * 100
    results = [
        {"image_id": int(i), "category_id": 1, "score": float(s), "bbox": b.tolist(), **extra}
        for i, s, b in zip(ids, scores, boxes, strict=True)
    ]
    for text in (json.dumps(results), json.dumps(results, indent=2), json.dumps(results)[:-1]):
        cols = decode_results(text.encode())
        if not text.endswith("]"):
            assert cols is None  # invalid JSON stays refused
            continue
        ref = Detections.from_coco_results(json.loads(text))
        for name in ("image_id", "category_id", "score", "bbox"):
            np.testing.assert_array_equal(getattr(cols, name), getattr(ref, name))


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 16])
@pytest.mark.parametrize(
    "text",
    [
        b'[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},]',
        b'[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]}, ]',
        b'[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]},,]',
        b'x[{"image_id": 1, "category_id": 1, "score": 1, "bbox": [1, 2, 3, 4]}]',
    ],
)
def test_pieces_never_accept_what_the_whole_list_refuses(monkeypatch, chunk_bytes, text):
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", chunk_bytes)
    with pytest.raises(ValueError):
        json.loads(text)
    assert decode_results(text) is None
    wrapped = b'{"a": ' + text.removeprefix(b"x") + b"}"  # valid JSON when text was, not a list
    assert decode_results(wrapped) is None
