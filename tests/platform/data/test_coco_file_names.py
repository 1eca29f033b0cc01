"""A COCO ``file_name`` cannot read outside the images folder: refused at load, naming the
annotation file, the image entry and the file name."""

from __future__ import annotations

import json

import pytest

from sparse_rcnn.platform.data.coco import AnnotationError, CocoDetection

from .conftest import write_png


@pytest.mark.parametrize(
    ("file_name", "problem"),
    [
        ("../secret.png", "contains '..' and would leave the images folder"),
        ("sub/../../secret.png", "contains '..' and would leave the images folder"),
        ("..\\secret.png", "contains '..' and would leave the images folder"),
        ("ABSOLUTE", "is absolute; it must be a path relative to the images folder"),
        ("file:///etc/passwd", "is a URI; it must be a path relative to the images folder"),
        ("", "is empty"),
    ],
)
def test_a_file_name_outside_the_images_folder_is_refused(hand_coco, tmp_path, file_name, problem):
    ann_file, root = hand_coco()
    secret = tmp_path / "hand" / "secret.png"  # next to the images folder: readable if joined
    write_png(secret, 60, 80)
    if file_name == "ABSOLUTE":
        file_name = str(secret)
    data = json.loads(ann_file.read_text())
    data["images"][1]["file_name"] = file_name
    ann_file.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as e:
        CocoDetection(ann_file, root, train=False)
    assert str(e.value) == (
        f"annotation file {ann_file}: images[1] (id 2): file_name {file_name!r} {problem}"
    )


def test_sub_folders_and_dots_inside_names_are_fine(hand_coco):
    ann_file, root = hand_coco()
    (root / "sub").mkdir()
    (root / "002.png").rename(root / "sub" / "a..b.png")
    data = json.loads(ann_file.read_text())
    data["images"][1]["file_name"] = "sub/a..b.png"
    ann_file.write_text(json.dumps(data))
    ds = CocoDetection(ann_file, root, train=False)
    image, _, _ = ds[1]
    assert tuple(image.shape[-2:]) != (0, 0)
