"""COCO ground truth as flat arrays, read the way pycocotools' COCOeval reads it.

What COCOeval(bbox) uses from an annotation file, and how it is kept here:

- the image set is every entry of ``images`` (including images without annotations), sorted by
  id; the category set is every entry of ``categories``, sorted by id;
- an annotation's ``bbox`` is ``x, y, w, h`` in absolute pixels; its ``area`` field (for COCO
  instances: the mask area, not the box area) decides the small/medium/large range;
- ``iscrowd`` marks an ignore region. pycocotools overwrites any ``ignore`` field with
  ``iscrowd``, so an ``ignore`` field has no effect here either;
- annotation ids must be unique and non-zero: pycocotools indexes annotations by id (duplicates
  silently alias each other) and reads a match to id 0 as "no match".

Where pycocotools would crash or silently mis-evaluate, :func:`load_ground_truth` raises
:class:`~sparse_rcnn.platform.errors.InputError` (a ValueError) naming the offending entry instead.
Files are decoded by :mod:`.coco_json`; the standard library reads what that refuses, so both
readers accept the same files and the messages name the entry as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparse_rcnn.platform.errors import InputError, MissingFileError
from sparse_rcnn.platform.evaluation.coco_json import InstanceColumns, decode_instances, mapped
from sparse_rcnn.platform.evaluation.json_columns import int_column


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth boxes of one COCO annotation set.

    Attributes:
        image_ids: (N,) int64 sorted unique image ids; image index ``i`` means ``image_ids[i]``.
        category_ids: (K,) int64 sorted unique category ids; category index likewise.
        image: (G,) int64 image index of each annotation.
        category: (G,) int64 category index of each annotation.
        bbox: (G, 4) float64 ``x, y, w, h`` in absolute pixels.
        area: (G,) float64 the annotation's ``area`` field (``w * h`` where absent).
        iscrowd: (G,) bool crowd (ignore) regions.
        ann_id: (G,) int64 annotation ids, unique and non-zero.

    Annotations keep the file's order, which decides ties in matching as in pycocotools.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    image: np.ndarray
    category: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray
    ann_id: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_categories(self) -> int:
        return len(self.category_ids)


def load_ground_truth(source: GroundTruth | dict | str | Path) -> GroundTruth:
    """Read a COCO annotation dict or JSON file into a :class:`GroundTruth`.

    Raises :class:`MissingFileError` (a FileNotFoundError) for a missing file or a directory and
    :class:`InputError` (a ValueError), naming the entry, for a file
    that is not COCO instances JSON: missing ``images``/``annotations``/``categories``,
    duplicate image/category/annotation ids, annotation id 0, an annotation on an image or
    category that the file does not list, or a bbox that is not four finite numbers.
    """
    if isinstance(source, GroundTruth):
        return source
    name = "ground truth"
    if isinstance(source, str | Path):
        name = str(source)
        path = Path(source)
        if path.is_dir():
            raise MissingFileError(f"ground truth {path} is a directory; give the COCO JSON file")
        if not path.is_file():
            raise MissingFileError(f"ground-truth file not found: {path}")
        with mapped(path) as data:
            columns = decode_instances(data)
        if columns is not None:
            return _from_columns(columns, name)
        # Not plainly typed: the standard library reads it, and accepts it or says what is wrong.
        try:
            with open(path) as f:
                source = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{name}: not valid JSON ({e})") from e
    return _from_dict(source, name)


def _from_dict(source: object, name: str) -> GroundTruth:
    """Check the types of a parsed COCO instances object, then :func:`_validated`."""
    if not isinstance(source, dict):
        raise InputError(f"{name}: expected a COCO annotation object, got {type(source).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(source.get(key), list):
            raise InputError(f"{name}: COCO ground truth needs a list '{key}'")
    image_ids = _unique_ids(source["images"], "images", name)
    category_ids = _unique_ids(source["categories"], "categories", name)
    anns = source["annotations"]
    try:
        raw = {k: [a[k] for a in anns] for k in ("image_id", "category_id", "id")}
        bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(len(anns), 4)
        area = np.array([a.get("area", np.nan) for a in anns], dtype=np.float64)
        iscrowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{name}: {_first_bad_annotation(anns)}") from e

    def annotation(k: int) -> str:
        return f"{name}: annotations[{k}]"

    raw_img = int_column(raw["image_id"], "image_id", annotation)
    raw_cat = int_column(raw["category_id"], "category_id", annotation)
    ann_id = int_column(raw["id"], "id", annotation)
    return _validated(image_ids, category_ids, raw_img, raw_cat, bbox, area, iscrowd, ann_id, name)


def _from_columns(c: InstanceColumns, name: str) -> GroundTruth:
    """:func:`_validated` of typed columns (:func:`.coco_json.decode_instances`); the checks
    and their order are those of :func:`_from_dict` less the type checks decoding did."""
    image_ids = _sorted_unique(c.image_ids, "images", name)
    category_ids = _sorted_unique(c.category_ids, "categories", name)
    return _validated(
        image_ids, category_ids, c.ann_image_id, c.ann_category_id, c.bbox, c.area.copy(),
        c.iscrowd, c.ann_id, name,
    )  # fmt: skip


def _validated(
    image_ids: np.ndarray,
    category_ids: np.ndarray,
    raw_img: np.ndarray,
    raw_cat: np.ndarray,
    bbox: np.ndarray,
    area: np.ndarray,
    iscrowd: np.ndarray,
    ann_id: np.ndarray,
    name: str,
) -> GroundTruth:
    """The :class:`GroundTruth` of typed annotation columns (file order), after the checks
    that need the whole file: finite boxes, unique non-zero annotation ids, listed images and
    categories. ``area`` NaN (absent) becomes the box area, in place."""
    if not np.isfinite(bbox).all():
        k = int(np.flatnonzero(~np.isfinite(bbox).all(axis=1))[0])
        raise InputError(f"{name}: annotations[{k}] has a non-finite bbox {bbox[k].tolist()}")
    no_area = np.isnan(area)
    area[no_area] = bbox[no_area, 2] * bbox[no_area, 3]
    if len(ann_id) != len(np.unique(ann_id)):
        ids, counts = np.unique(ann_id, return_counts=True)
        raise InputError(f"{name}: duplicate annotation id {int(ids[counts > 1][0])}")
    if (ann_id == 0).any():
        k = int(np.flatnonzero(ann_id == 0)[0])
        raise InputError(
            f"{name}: annotations[{k}] has id 0; COCOeval reads a match to id 0 as no match, "
            "so annotation ids must be non-zero"
        )
    image = _index_of(raw_img, image_ids, "image_id", "images", name)
    category = _index_of(raw_cat, category_ids, "category_id", "categories", name)
    return GroundTruth(image_ids, category_ids, image, category, bbox, area, iscrowd, ann_id)


def _unique_ids(entries: list, key: str, name: str) -> np.ndarray:
    """Sorted ids of ``entries`` (COCO images or categories); duplicates raise ValueError."""
    try:
        raw = [e["id"] for e in entries]
    except (KeyError, TypeError) as e:
        raise InputError(f"{name}: every entry of '{key}' needs an integer 'id'") from e
    ids = int_column(raw, "id", lambda i: f"{name}: {key}[{i}]")
    return _sorted_unique(ids, key, name)


def _sorted_unique(ids: np.ndarray, key: str, name: str) -> np.ndarray:
    """(N,) sorted ``ids`` of the entries of ``key``; a repeated id raises ValueError."""
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != len(ids):
        raise InputError(f"{name}: duplicate id {int(uniq[counts > 1][0])} in '{key}'")
    return uniq


def _index_of(
    values: np.ndarray, ids: np.ndarray, field: str, listing: str, name: str
) -> np.ndarray:
    """Positions of ``values`` in the sorted ``ids``; an unlisted value raises ValueError."""
    pos = np.searchsorted(ids, values).clip(0, max(len(ids) - 1, 0))
    bad = (ids[pos] != values) if len(ids) else np.ones(len(values), dtype=bool)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name}: annotations[{k}] has {field} {int(values[k])}, "
            f"which '{listing}' does not list"
        )
    return pos.astype(np.int64)


def _first_bad_annotation(anns: list) -> str:
    """Describe the first annotation that cannot be read as a COCO box annotation."""
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            return f"annotations[{k}] is a {type(a).__name__}, expected an object"
        missing = [f for f in ("id", "image_id", "category_id", "bbox") if f not in a]
        if missing:
            return f"annotations[{k}] lacks {missing}"
        bbox = a["bbox"]
        if not isinstance(bbox, list | tuple) or len(bbox) != 4:
            return f"annotations[{k}] has bbox {bbox!r}; expected [x, y, w, h]"
        try:
            int(a["id"]), int(a["image_id"]), int(a["category_id"])
            [float(v) for v in bbox]
            float(a.get("area", 0.0))
        except (TypeError, ValueError):
            return f"annotations[{k}] has a non-numeric field: {a!r:.200}"
    return "annotations could not be read as numbers"
