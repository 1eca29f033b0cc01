"""Detections: construction, concat, COCO results and Parquet/JSON files with clear errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparse_rcnn.platform.evaluation.detections import (
    Detections,
    load_detections,
    save_detections,
)


def _some(n: int = 5, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    return Detections(
        image_id=rng.integers(1, 100, n),
        category_id=rng.integers(1, 91, n),
        score=rng.random(n).astype(np.float32),
        bbox=rng.uniform(0, 500, (n, 4)),
    )


def test_dtypes_and_length():
    d = _some()
    assert len(d) == 5
    assert d.image_id.dtype == np.int64 and d.category_id.dtype == np.int64
    assert d.score.dtype == np.float32 and d.bbox.dtype == np.float64 and d.bbox.shape == (5, 4)
    with pytest.raises(ValueError, match="differ in length"):
        Detections(d.image_id, d.category_id[:3], d.score, d.bbox)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Detections(d.image_id, d.category_id, d.score, d.bbox[:, :3])


def test_empty_and_concat():
    e = Detections.empty()
    assert len(e) == 0 and e.bbox.shape == (0, 4)
    assert len(Detections.concat([])) == 0
    a, b = _some(3, 0), _some(4, 1)
    c = Detections.concat([a, e, b])
    assert len(c) == 7 and c.score.dtype == np.float32
    np.testing.assert_array_equal(c.bbox, np.r_[a.bbox, b.bbox])
    np.testing.assert_array_equal(c.image_id, np.r_[a.image_id, b.image_id])


def test_coco_results_round_trip():
    d = _some()
    res = d.to_coco_results()
    assert set(res[0]) == {"image_id", "category_id", "score", "bbox"}
    assert type(res[0]["image_id"]) is int and type(res[0]["score"]) is float
    back = Detections.from_coco_results(json.loads(json.dumps(res)))
    np.testing.assert_array_equal(back.bbox, d.bbox)
    np.testing.assert_array_equal(back.score, d.score.astype(np.float64))
    assert len(Detections.from_coco_results([])) == 0


@pytest.mark.parametrize("suffix", [".parquet", ".json"])
def test_file_round_trip(tmp_path, suffix):
    d = _some(50)
    path = tmp_path / f"dets{suffix}"
    save_detections(d, path)
    back = load_detections(path)
    np.testing.assert_array_equal(back.image_id, d.image_id)
    np.testing.assert_array_equal(back.category_id, d.category_id)
    np.testing.assert_array_equal(back.bbox, d.bbox)
    np.testing.assert_array_equal(back.score, d.score)  # float32 widens exactly in JSON
    if suffix == ".parquet":
        assert back.score.dtype == np.float32
        assert pq.read_table(path).column_names == [
            "image_id",
            "category_id",
            "score",
            "x",
            "y",
            "w",
            "h",
        ]
    save_detections(Detections.empty(), path)
    assert len(load_detections(path)) == 0


def test_file_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"'\.csv'"):
        save_detections(_some(), tmp_path / "d.csv")
    with pytest.raises(ValueError, match=r"'\.txt'"):
        load_detections(tmp_path / "d.txt")
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_detections(tmp_path / "nope.parquet")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        load_detections(bad_json)
    not_list = tmp_path / "obj.json"
    not_list.write_text('{"image_id": 1}')
    with pytest.raises(ValueError, match="obj.json.*JSON list"):
        load_detections(not_list)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match=r"missing.json.*entry 0 lacks \['score'\]"):
        load_detections(missing)
    bad_box = tmp_path / "box.json"
    bad_box.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 1], "score": 1}]))
    with pytest.raises(ValueError, match="box.json.*entry 0 has bbox"):
        load_detections(bad_box)
    cols = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"image_id": [1], "score": [0.5]}), cols)
    with pytest.raises(ValueError, match=r"cols.parquet.*lack columns \['category_id', 'x'"):
        load_detections(cols)
    nulls = tmp_path / "nulls.parquet"
    table = {c: [1.0, None] for c in ("score", "x", "y", "w", "h")}
    pq.write_table(pa.table({"image_id": [1, 2], "category_id": [1, 1], **table}), nulls)
    with pytest.raises(ValueError, match="nulls.parquet.*missing values"):
        load_detections(nulls)
