"""Batched inference over image files: decode, test transform, forward, top-k, map boxes back
to original pixels, COCO category ids."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sparse_rcnn.models.box_ops import xyxy_to_xywh
from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.models.postprocess import ImageDetections, PostProcess
from sparse_rcnn.platform.data.categories import CategoryMap
from sparse_rcnn.platform.data.image_io import ImageDecodeError, load_image
from sparse_rcnn.platform.data.transforms import (
    ImageMeta,
    boxes_to_original,
    pad_batch,
    test_transform,
)
from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.evaluation.detections import Detections


def image_ids_for(paths: list[Path], file_name_to_id: dict[str, int] | None = None) -> list[int]:
    """COCO image id of each file: from an annotation file's ``file_name`` map when given
    (a file not in it raises :class:`InputError` naming it), else the number in a COCO-style name
    (``000000397133.jpg`` -> 397133), else the position in the list. Ids must be unique."""
    if file_name_to_id is not None:
        ids = []
        for p in paths:
            key = p.name if p.name in file_name_to_id else str(p)
            if key not in file_name_to_id:
                raise InputError(f"image {p} is not listed in the annotation file")
            ids.append(int(file_name_to_id[key]))
    elif all(re.fullmatch(r"\d+", p.stem) for p in paths):
        ids = [int(p.stem) for p in paths]
    else:
        ids = list(range(len(paths)))
    if len(set(ids)) != len(ids):
        raise InputError("image ids are not unique; pass --ann to map file names to ids")
    return ids


def to_detections(
    dets: list[ImageDetections], metas: list[ImageMeta] | tuple[ImageMeta, ...],
    category_ids: np.ndarray, cfg: ModelConfig,
) -> Detections:  # fmt: skip
    """Post-processed detections of a batch (input frame, contiguous labels) -> COCO results:
    boxes mapped back to each file's pixels (clipped if ``cfg.clip_boxes``), xywh, category ids
    from ``category_ids[label]``."""
    parts = []
    for meta, det in zip(metas, dets, strict=True):
        boxes = boxes_to_original(det.boxes.float().cpu(), meta, clip=cfg.clip_boxes)
        parts.append(
            Detections(
                image_id=np.full(len(det.scores), meta.image_id, dtype=np.int64),
                category_id=category_ids[det.labels.cpu().numpy()],
                score=det.scores.float().cpu().numpy(),
                bbox=xyxy_to_xywh(boxes).double().numpy(),
            )
        )
    return Detections.concat(parts)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class SkippedImage:
    """An image :func:`predict_files` could not read; ``reason`` names the file."""

    path: Path
    reason: str


@dataclass(frozen=True)
class FilePredictions:
    """What :func:`predict_files` returns: COCO results (xywh in original pixels) of the images
    it read, and the unreadable images it skipped (input order; empty unless skipping)."""

    detections: Detections
    skipped: tuple[SkippedImage, ...]


@torch.no_grad()
def predict_files(
    model: SparseRCNN,
    paths: list[Path],
    image_ids: list[int],
    categories: CategoryMap,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    progress: bool = True,
    skip_bad_images: bool = False,
) -> FilePredictions:
    """Detections for every image in ``paths`` (COCO results: xywh in original pixels).

    The model's config decides the test scale, padding divisor, detections per image and
    whether boxes are clipped to the image. An image that cannot be read or decoded raises
    :class:`ImageDecodeError` naming it, or with ``skip_bad_images`` is left out and listed in
    :attr:`FilePredictions.skipped`.
    """
    cfg = model.cfg
    if len(categories) != cfg.num_classes:
        raise InputError(
            f"the model predicts {cfg.num_classes} classes but {len(categories)} categories "
            "were given"
        )
    model.eval().to(device)
    post = PostProcess(cfg.detections_per_image)
    cat_ids = np.asarray(categories.category_ids, dtype=np.int64)
    parts: list[Detections] = []
    skipped: list[SkippedImage] = []
    items = list(zip(paths, image_ids, strict=True))
    with tqdm(total=len(items), unit="img", disable=not progress) as bar:
        for batch in _batches(items, batch_size):
            images, metas = [], []
            for path, image_id in batch:
                try:
                    image = load_image(path)
                except ImageDecodeError as e:
                    if not skip_bad_images:
                        raise
                    skipped.append(SkippedImage(path, str(e)))
                    continue
                x, meta = test_transform(image, image_id, cfg.test_scale)
                images.append(x)
                metas.append(meta)
            if images:
                x, sizes = pad_batch(images, cfg.size_divisor)
                parts.append(to_detections(post(model(x.to(device), sizes)), metas, cat_ids, cfg))
            bar.update(len(batch))
    return FilePredictions(Detections.concat(parts), tuple(skipped))
