"""COCO reader: labels, crowd/invalid handling with counts, filters, errors naming files."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from sparse_rcnn.platform.data.categories import CategoryMap
from sparse_rcnn.platform.data.coco import AnnotationError, CocoDetection, join_path
from sparse_rcnn.platform.data.image_io import ImageDecodeError


def test_parsing_counts_and_labels(hand_coco, caplog):
    ann_file, root = hand_coco()
    with caplog.at_level(logging.WARNING, logger="sparse_rcnn.platform.data.coco"):
        ds = CocoDetection(ann_file, root, train=True, pipeline="test")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "dropped 3 boxes" in warnings[0] and str(ann_file) in warnings[0]
    r = ds.report
    assert (r.images_in_file, r.images_kept) == (6, 4)
    assert (r.filtered_no_annotations, r.filtered_small) == (1, 1)  # image 3, image 4
    assert (r.crowd_boxes, r.ignored_boxes, r.invalid_boxes, r.boxes_kept) == (2, 1, 3, 4)
    by_id = {rec.image_id: rec for rec in ds.records}
    assert sorted(by_id) == [1, 2, 5, 6]
    assert by_id[1].boxes.tolist() == [[10, 10, 30, 40], [30, 20, 70, 50]]  # xywh -> xyxy
    assert by_id[1].labels.tolist() == [0, 79]  # category 1 -> 0, category 90 -> 79
    assert by_id[2].labels.tolist() == [2]  # category 3 (car) -> 2
    assert by_id[5].boxes.shape == (0, 4)  # only a crowd box: kept with no targets (mmdet)
    assert by_id[6].boxes.tolist() == [[4, 8, 24, 38]]


def test_filters_are_training_only_and_configurable(hand_coco):
    ann_file, root = hand_coco()
    evaluation = CocoDetection(ann_file, root, train=False)
    assert evaluation.image_ids == [1, 2, 3, 4, 5, 6]
    unfiltered = CocoDetection(ann_file, root, train=True, filter_empty_gt=False, min_size=0)
    assert unfiltered.image_ids == [1, 2, 3, 4, 5, 6]
    only_small = CocoDetection(ann_file, root, train=True, filter_empty_gt=False)
    assert only_small.image_ids == [1, 2, 3, 5, 6]


def test_getitem_returns_transformed_targets(hand_coco):
    ann_file, root = hand_coco()
    ds = CocoDetection(ann_file, root, train=False)
    image, target, meta = ds[0]  # image 1, 80x60 -> test scale: factor min(1333/80, 800/60)
    assert image.shape == (3, 800, 1067) and image.dtype == torch.float32
    assert meta.image_id == 1 and meta.orig_size == (60, 80) and meta.size == (800, 1067)
    sx, sy = meta.scale_factor
    expected = torch.tensor(
        [[10 * sx, 10 * sy, 30 * sx, 40 * sy], [30 * sx, 20 * sy, 70 * sx, 50 * sy]]
    )
    assert torch.allclose(target["boxes"], expected)
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [0, 79]
    _, empty, _ = ds[2]  # image 3: no annotations
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    with pytest.raises(IndexError):
        ds[6]


def metas(ds: CocoDetection, epoch: int) -> list:
    return [ds[(i, epoch)][2] for i in range(len(ds))]


def test_augmentation_depends_on_aug_seed_epoch_and_image_only(hand_coco):
    ann_file, root = hand_coco()
    a, b, c = (
        CocoDetection(ann_file, root, train=True, pipeline="multiscale", aug_seed=seed)
        for seed in (5, 5, 6)
    )
    assert metas(a, 0) == metas(b, 0)
    assert metas(a, 0) != metas(c, 0)
    assert metas(a, 0) != metas(a, 1)
    a.set_epoch(1)
    assert [a[i][2] for i in range(len(a))] == metas(b, 1)


def test_unknown_category_is_an_error_naming_file_and_id(hand_coco):
    ann_file, root = hand_coco()
    with pytest.raises(AnnotationError, match=r"instances\.json.*annotation id 6.*category id 90"):
        CocoDetection(ann_file, root, train=True, category_map=CategoryMap([1, 3]))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"annotations": [], "categories": []}', "missing or non-list 'images'"),
        (
            '{"images": [{"id": 1, "file_name": "a.png", "width": 8}], "categories": []}',
            r"images\[0\] needs",
        ),
        (
            '{"images": [], "categories": [], "annotations": [{"id": 4, "image_id": 9, '
            '"category_id": 1, "bbox": [0, 0, 1, 1]}]}',
            r"annotations\[0\] \(id 4\): image_id 9 is not in 'images'",
        ),
        (
            '{"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}], '
            '"categories": [], "annotations": [{"id": 4, "image_id": 1, "category_id": 1, '
            '"bbox": [0, 0, 1]}]}',
            r"'bbox' must be 4 finite numbers",
        ),
    ],
)
def test_broken_annotation_file_names_the_file(tmp_path, content, message):
    ann_file = tmp_path / "broken.json"
    ann_file.write_text(content)
    with pytest.raises(AnnotationError, match=message) as info:
        CocoDetection(ann_file, tmp_path, train=True)
    assert str(ann_file) in str(info.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(AnnotationError, match=r"cannot read annotation file .*nope\.json"):
        CocoDetection(tmp_path / "nope.json", tmp_path, train=False)


def test_missing_corrupt_and_mismatched_images_name_the_file(hand_coco):
    ann_file, root = hand_coco()
    (root / "002.png").unlink()
    (root / "005.png").write_bytes(b"\x89PNG this is not an image")
    ds = CocoDetection(ann_file, root, train=False)
    with pytest.raises(ImageDecodeError, match=r"002\.png"):
        ds[1]
    with pytest.raises(ImageDecodeError, match=r"005\.png"):
        ds[4]
    data = json.loads(ann_file.read_text())
    data["images"][0]["width"] = 81
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ImageDecodeError, match=r"001\.png decodes to 60x80 .* says 60x81"):
        CocoDetection(ann_file, root, train=False)[0]


def test_skip_bad_images_replaces_within_the_aspect_group_and_counts(hand_coco):
    ann_file, root = hand_coco()
    (root / "001.png").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="training only"):
        CocoDetection(ann_file, root, train=False, skip_bad_images=True)
    ds = CocoDetection(ann_file, root, train=True, pipeline="test", skip_bad_images=True)
    assert ds.image_ids == [1, 2, 5, 6]  # landscape: 1, 5; portrait: 2, 6
    _, _, meta = ds[0]
    assert meta.image_id == 5  # the next landscape image
    assert list(ds.skipped) == [str(root / "001.png")]
    assert ds[1][2].image_id == 2
    strict = CocoDetection(ann_file, root, train=True)
    with pytest.raises(ImageDecodeError, match=r"001\.png"):
        strict[0]


def test_aspect_groups(hand_coco):
    ann_file, root = hand_coco()
    ds = CocoDetection(ann_file, root, train=False)
    assert ds.aspect_groups().tolist() == [1, 0, 1, 1, 1, 0]  # w > h is landscape


def test_join_path_local_and_uri():
    assert join_path("s3://bucket/coco/", "train/1.jpg") == "s3://bucket/coco/train/1.jpg"
    assert join_path("/data/coco", "1.jpg") == "/data/coco/1.jpg"
