"""The synthetic dataset: byte-identical from a seed, COCO-valid, varied as promised; its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparse_rcnn.platform.cli.main import main
from sparse_rcnn.platform.data.categories import COCO_CATEGORY_IDS, CategoryMap
from sparse_rcnn.platform.data.coco import CocoDetection, load_coco
from sparse_rcnn.platform.data.image_io import load_image
from sparse_rcnn.platform.data.synthetic import SYNTHETIC_CATEGORIES, make_synthetic, split_paths


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = files(make_synthetic(tmp_path / "a", 8, seed=5).root)
    b = files(make_synthetic(tmp_path / "b", 8, seed=5).root)
    c = files(make_synthetic(tmp_path / "c", 8, seed=6).root)
    assert len(a) == 8 + 2 and a == b
    a, c = ({Path(k).name: v for k, v in d.items()} for d in (a, c))  # the splits differ
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_layout_and_coco_content(synthetic_root):
    data = {s: json.loads(split_paths(synthetic_root, s)[0].read_text()) for s in ("train", "val")}
    images = data["train"]["images"] + data["val"]["images"]
    assert (len(data["train"]["images"]), len(data["val"]["images"])) == (18, 6)
    assert sorted(i["id"] for i in images) == list(range(1, 25))
    cat_ids = [c["id"] for c in data["train"]["categories"]]
    assert cat_ids == [1, 3, 17, 37, 44, 62] and set(cat_ids) <= set(COCO_CATEGORY_IDS)
    assert [c["name"] for c in data["train"]["categories"]] == [
        "person", "car", "cat", "sports ball", "bottle", "chair"
    ]  # fmt: skip
    assert {"landscape", "portrait"} == {
        "landscape" if i["width"] > i["height"] else "portrait" for i in images
    }
    assert all(320 <= max(i["width"], i["height"]) <= 640 for i in images)
    anns = data["train"]["annotations"] + data["val"]["annotations"]
    size = {i["id"]: (i["width"], i["height"]) for i in images}
    for a in anns:
        x, y, w, h = a["bbox"]
        W, H = size[a["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H and w >= 1 and h >= 1
        assert 0 < a["area"] <= w * h
    areas = [a["area"] for a in anns if not a["iscrowd"]]
    assert min(areas) < 32**2 and any(32**2 <= v < 96**2 for v in areas) and max(areas) >= 96**2
    assert any(a["iscrowd"] for a in anns)
    empty = [i for i in images if i["id"] not in {a["image_id"] for a in anns}]
    assert len(empty) == 2  # one in every 12
    assert len({a["image_id"] for a in anns if a["iscrowd"]}) == 4  # two in every 12
    per_image = [sum(a["image_id"] == i["id"] for a in anns) for i in images]
    assert max(per_image) >= 4
    for split in ("train", "val"):  # pycocotools reads it; the image files match the JSON
        ann_file, folder = split_paths(synthetic_root, split)
        coco = load_coco(ann_file)
        first = coco.dataset["images"][0]
        assert tuple(load_image(folder / first["file_name"]).shape) == (
            3, first["height"], first["width"]
        )  # fmt: skip


def test_reader_maps_synthetic_categories_to_coco_labels(synthetic_root):
    ann_file, folder = split_paths(synthetic_root, "train")
    ds = CocoDetection(ann_file, folder, train=True)
    coco_labels = {CategoryMap.coco().label(c.category_id) for c in SYNTHETIC_CATEGORIES}
    labels = {int(v) for r in ds.records for v in r.labels}
    assert labels <= coco_labels and len(labels) >= 4
    data = json.loads(ann_file.read_text())
    empty = {i["id"] for i in data["images"]} - {a["image_id"] for a in data["annotations"]}
    assert ds.report.invalid_boxes == 0 and ds.report.filtered_no_annotations == len(empty)
    assert ds.report.crowd_boxes == sum(a["iscrowd"] for a in data["annotations"])


def test_cli(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["make-synthetic", str(out), "--images", "5", "--seed", "2", "--val-fraction", "0.4"]
    assert main(argv) == 0
    assert "3 train + 2 val images" in capsys.readouterr().out
    assert len(list((out / "images" / "val").glob("*.jpg"))) == 2
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv[:3], "2", "--overwrite"]) == 0
    assert len(list((out / "images").rglob("*.jpg"))) == 2  # the old images are gone
    assert main(["make-synthetic", str(tmp_path / "x"), "--images", "0"]) == 2
    assert "num_images must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 3, "seed": -1}, "seed"),
        ({"num_images": 3, "seed": 0, "val_fraction": 1.0}, "val_fraction"),
        ({"num_images": 3, "seed": 0, "min_size": 700}, "min_size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic(tmp_path, **kwargs)


def test_easy_difficulty_is_a_smaller_problem(tmp_path):
    from sparse_rcnn.platform.data.synthetic import render_image

    ds = make_synthetic(tmp_path / "e", 24, seed=3, val_fraction=0.25, min_size=96,
                        max_size=128, difficulty="easy")  # fmt: skip
    data = json.loads(ds.train_ann.read_text())
    assert [c["id"] for c in data["categories"]] == [
        c.category_id for c in SYNTHETIC_CATEGORIES[:3]
    ]
    assert data["info"]["difficulty"] == "easy"
    per_image = {}
    for a in data["annotations"]:
        per_image.setdefault(a["image_id"], []).append(a)
        assert a["iscrowd"] == 0
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    assert set(per_image) == set(sizes)  # no empty images
    for image_id, anns in per_image.items():
        assert 1 <= len(anns) <= 3
        h, w = sizes[image_id]
        for a in anns:  # large: a visible box side of at least ~30% of the short side * 0.5
            assert max(a["bbox"][2], a["bbox"][3]) >= 0.15 * min(h, w)
    a1, _ = render_image(3, 5, 96, 128, "easy")
    a2, _ = render_image(3, 5, 96, 128, "easy")
    assert (a1 == a2).all()
    with pytest.raises(ValueError, match="difficulty must be one of"):
        render_image(3, 5, 96, 128, "hard")
