"""COCO-format detection dataset: annotation parsing (pycocotools), filtering, decoding, pipeline.

Annotation files and images may be local paths or object-store URIs (``s3://``, ``gs://``, read
through ``pyarrow.fs``), so every worker on every node reads the same dataset.

Parsing follows mmdetection's ``CocoDataset`` (spec 2.5):

- labels are contiguous ``0..K-1`` through a :class:`CategoryMap` (default: COCO's 80 classes, so
  a dataset using a subset of COCO's category ids keeps COCO's labels); an annotation whose
  category id is not in the map is an error, not a silent skip;
- COCO ``[x, y, w, h]`` boxes become absolute-pixel ``xyxy``; boxes with ``w < 1``, ``h < 1``,
  ``area <= 0`` or no overlap with the image are dropped, counted and reported once;
  ``iscrowd=1`` boxes (and mmdetection's ``ignore: true``) are excluded from the targets;
- training only: images with no annotation at all (``filter_empty_gt``) or with a side under
  ``min_size`` px are left out. As in mmdetection, an image whose annotations are all crowd or
  invalid is kept and trains with zero boxes.

A missing, unreadable or corrupt image, or one whose decoded size differs from the annotation
file's, raises :class:`~sparse_rcnn.platform.data.image_io.ImageDecodeError` naming the file; with
``skip_bad_images`` (training only) it is logged, counted in :attr:`CocoDetection.skipped` and
replaced by the next image of the same aspect group.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from sparse_rcnn.platform.errors import PlatformError

from .augment import InputSizes, Pipeline, get_pipeline, sample_rng
from .categories import CategoryMap
from .image_io import ImageDecodeError, load_image, read_image_bytes
from .transforms import ImageMeta

logger = logging.getLogger(__name__)

Target = dict[str, Tensor]  # {"boxes": float32 (M, 4) xyxy, "labels": int64 (M,)}


class AnnotationError(PlatformError, ValueError):
    """An annotation file is missing, not JSON, or not COCO-shaped; the message names the file."""


@dataclass(frozen=True)
class ImageRecord:
    """One image as parsed from the annotation file; boxes in the file's pixels."""

    image_id: int
    path: str
    height: int
    width: int
    boxes: np.ndarray  # float32 (M, 4) absolute xyxy, non-crowd, valid
    labels: np.ndarray  # int64 (M,) contiguous labels


@dataclass(frozen=True)
class LoadReport:
    """What parsing kept and dropped. Image counts add up: ``images_in_file = images_kept +
    filtered_no_annotations + filtered_small``. ``boxes_kept`` counts the targets of the kept
    images; the crowd, ignored and invalid counts are over every image of the file."""

    images_in_file: int
    images_kept: int
    filtered_no_annotations: int  # training only, filter_empty_gt
    filtered_small: int  # training only, min side < min_size
    boxes_kept: int
    crowd_boxes: int  # iscrowd=1, excluded from targets
    ignored_boxes: int  # 'ignore': true
    invalid_boxes: int  # w < 1, h < 1, area <= 0 or no overlap with the image


def file_name_problem(name: str) -> str | None:
    """Why an image's ``file_name`` could read outside the images folder, or None. A file name
    is a relative path (sub-folders allowed) with no ``..`` part, no drive, no URI scheme and no
    NUL. Checked by name, not by resolving links: an images folder may link to another disk."""
    if not name:
        return "is empty"
    if "\0" in name:
        return "holds a NUL character"
    if "://" in name:
        return "is a URI; it must be a path relative to the images folder"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "is absolute; it must be a path relative to the images folder"
    if ".." in re.split(r"[/\\]", name):
        return "contains '..' and would leave the images folder"
    return None


def join_path(root: str | Path, name: str) -> str:
    """``root/name`` for a local folder or an object-store URI."""
    root = str(root)
    if "://" in root:
        return root.rstrip("/") + "/" + name.lstrip("/")
    return str(Path(root) / name)


def load_coco(ann_file: str | Path) -> COCO:
    """Read and validate a COCO annotation file (local or URI) into a pycocotools ``COCO``.

    Raises :class:`AnnotationError` naming the file (and the offending entry) when the file is
    missing, not JSON, or lacks the fields a detection dataset needs.
    """
    try:
        raw = read_image_bytes(ann_file)
    except OSError as e:
        raise AnnotationError(f"cannot read annotation file {ann_file}: {e}") from e
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(f"annotation file {ann_file} is not valid JSON: {e}") from e
    _validate(data, str(ann_file))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _validate(data: object, name: str) -> None:
    def fail(msg: str) -> None:
        raise AnnotationError(f"annotation file {name}: {msg}")

    if not isinstance(data, dict):
        fail(f"expected a JSON object at the top level, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            fail(f"missing or non-list '{key}'")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        fail("'annotations' is not a list")
    image_ids: set[int] = set()
    for k, img in enumerate(data["images"]):
        ok = isinstance(img, dict) and isinstance(img.get("id"), int)
        ok = ok and isinstance(img.get("file_name"), str)
        ok = ok and all(isinstance(img.get(f), int) and img[f] > 0 for f in ("width", "height"))
        if not ok:
            fail(f"images[{k}] needs an integer 'id', a 'file_name' and positive integer "
                 f"'width' and 'height', got {img!r:.200}")  # fmt: skip
        if (problem := file_name_problem(img["file_name"])) is not None:
            fail(f"images[{k}] (id {img['id']}): file_name {img['file_name']!r} {problem}")
        if img["id"] in image_ids:
            fail(f"images[{k}]: duplicate image id {img['id']}")
        image_ids.add(img["id"])
    for k, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int)):
            fail(f"categories[{k}] needs an integer 'id', got {cat!r:.200}")
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            fail(f"annotations[{k}] is not an object")
        where = f"annotations[{k}] (id {ann.get('id')})"
        if ann.get("image_id") not in image_ids:
            fail(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if not isinstance(ann.get("category_id"), int):
            fail(f"{where}: needs an integer 'category_id'")
        bbox = ann.get("bbox")
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
        ):
            fail(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r:.200}")


def parse_records(
    coco: COCO,
    image_root: str | Path,
    category_map: CategoryMap,
    *,
    train: bool,
    filter_empty_gt: bool,
    min_size: int,
    ann_file: str = "<annotations>",
) -> tuple[list[ImageRecord], LoadReport]:
    """Per-image targets (mmdetection's ``_parse_ann_info``) and the training filter
    (``_filter_imgs``), in the file's image order."""
    records: list[ImageRecord] = []
    crowd = ignored = invalid = kept_boxes = no_ann = small = 0
    for img in coco.dataset["images"]:
        img_id, w_img, h_img = img["id"], img["width"], img["height"]
        anns = coco.imgToAnns.get(img_id, [])
        boxes: list[list[float]] = []
        labels: list[int] = []
        for ann in anns:
            try:
                label = category_map.label(ann["category_id"])
            except KeyError as e:
                raise AnnotationError(
                    f"annotation file {ann_file}: annotation id {ann.get('id')}: {e.args[0]}"
                ) from None
            if ann.get("ignore", False):
                ignored += 1
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            inter_w = max(0.0, min(x + w, w_img) - max(x, 0.0))
            inter_h = max(0.0, min(y + h, h_img) - max(y, 0.0))
            if inter_w * inter_h == 0 or ann.get("area", w * h) <= 0 or w < 1 or h < 1:
                invalid += 1
                continue
            if ann.get("iscrowd", 0):
                crowd += 1
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        if train and filter_empty_gt and not anns:
            no_ann += 1
            continue
        if train and min(w_img, h_img) < min_size:
            small += 1
            continue
        kept_boxes += len(boxes)
        records.append(
            ImageRecord(
                image_id=img_id,
                path=join_path(image_root, img["file_name"]),
                height=h_img,
                width=w_img,
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
            )
        )
    report = LoadReport(
        images_in_file=len(coco.dataset["images"]),
        images_kept=len(records),
        filtered_no_annotations=no_ann,
        filtered_small=small,
        boxes_kept=kept_boxes,
        crowd_boxes=crowd,
        ignored_boxes=ignored,
        invalid_boxes=invalid,
    )
    return records, report


class CocoDetection(Dataset):
    """A COCO-format detection dataset with one of the :data:`~.augment.PIPELINES`.

    ``dataset[i]`` or ``dataset[(i, epoch)]`` returns ``(image, target, meta)``:

    - ``image``: float32 ``(3, h, w)``, RGB, mean/std normalised, not padded;
    - ``target``: ``{"boxes": float32 (M, 4) absolute xyxy in that image, "labels": int64 (M,)
      in 0..K-1}`` (crowd boxes excluded; ``M`` may be 0);
    - ``meta``: :class:`ImageMeta` mapping the image back to the file's pixels.

    The augmentation of image ``i`` depends only on ``(aug_seed, epoch, image_id)``; the
    epoch comes from the key (what :class:`~.sampler.GroupedBatchSampler` yields) or, for a
    plain integer key, from :meth:`set_epoch`.

    ``train`` selects the mmdetection training behaviour: the ``filter_empty_gt`` and
    ``min_size`` filters apply, the default pipeline is ``single_scale`` (else ``test``), and
    ``skip_bad_images`` is allowed (an evaluation must see every image).
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_root: str | Path,
        *,
        train: bool,
        pipeline: str | Pipeline | None = None,
        input_sizes: InputSizes | None = None,
        aug_seed: int = 0,
        filter_empty_gt: bool = True,
        min_size: int = 32,
        category_map: CategoryMap | None = None,
        skip_bad_images: bool = False,
    ):
        if aug_seed < 0:
            raise ValueError(f"aug_seed must be >= 0, got {aug_seed}")
        if skip_bad_images and not train:
            raise ValueError("skip_bad_images applies to training only")
        if pipeline is None:
            pipeline = "single_scale" if train else "test"
        self.pipeline: Pipeline = (
            get_pipeline(pipeline, input_sizes) if isinstance(pipeline, str) else pipeline
        )
        self.ann_file = str(ann_file)
        self.train = train
        self.aug_seed = aug_seed
        self.skip_bad_images = skip_bad_images
        self.category_map = category_map or CategoryMap.coco()
        self.epoch = 0
        self.skipped: dict[str, str] = {}  # file -> reason, in this process
        coco = load_coco(ann_file)
        self.records, self.report = parse_records(
            coco,
            image_root,
            self.category_map,
            train=train,
            filter_empty_gt=filter_empty_gt,
            min_size=min_size,
            ann_file=self.ann_file,
        )
        if self.report.invalid_boxes:
            logger.warning(
                "%s: dropped %d boxes with width or height < 1 px, area <= 0 or no overlap "
                "with the image",
                self.ann_file,
                self.report.invalid_boxes,
            )
        logger.info("%s: %s", self.ann_file, self.report)
        if not self.records:
            raise ValueError(f"{self.ann_file}: no images left after filtering ({self.report})")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_ids(self) -> list[int]:
        return [r.image_id for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer keys (a ``(index, epoch)`` key carries its own)."""
        self.epoch = int(epoch)

    def aspect_groups(self) -> np.ndarray:
        """int64 ``(N,)``: 1 for landscape (``w > h``), 0 otherwise (mmdetection's flag)."""
        return np.array([int(r.width > r.height) for r in self.records], dtype=np.int64)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Target, ImageMeta]:
        index, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images")
        record, image = self._load_with_fallback(int(index))
        rng = sample_rng(self.aug_seed, int(epoch), record.image_id)
        out = self.pipeline(
            image, torch.tensor(record.boxes), torch.tensor(record.labels), rng, record.image_id
        )
        return out.image, {"boxes": out.boxes, "labels": out.labels}, out.meta

    def _load(self, record: ImageRecord) -> Tensor:
        image = load_image(record.path)
        if tuple(image.shape[-2:]) != (record.height, record.width):
            raise ImageDecodeError(
                f"image {record.path} decodes to {image.shape[-2]}x{image.shape[-1]} (HxW) but "
                f"{self.ann_file} says {record.height}x{record.width}"
            )
        return image

    def _load_with_fallback(self, index: int) -> tuple[ImageRecord, Tensor]:
        """The image at ``index``; when it is bad and skipping is on, the next good image of the
        same aspect group (cyclically)."""
        first = self.records[index]
        group = first.width > first.height
        n = len(self.records)
        for step in range(n):
            record = self.records[(index + step) % n]
            if (record.width > record.height) != group or record.path in self.skipped:
                continue
            try:
                return record, self._load(record)
            except ImageDecodeError as e:
                if not self.skip_bad_images:
                    raise
                self.skipped[record.path] = str(e)
                logger.warning("skipping image (%d skipped so far): %s", len(self.skipped), e)
        raise ImageDecodeError(
            f"every image of {self.ann_file} in the same aspect group as {first.path} failed to "
            f"load; first error: {next(iter(self.skipped.values()), '')}"
        )
