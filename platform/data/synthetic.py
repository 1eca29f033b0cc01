"""A synthetic COCO-format detection dataset of coloured shapes, deterministic from a seed.

Layout written under ``root``::

    annotations/instances_train.json    COCO detection JSON (bbox [x, y, w, h], area, iscrowd)
    annotations/instances_val.json
    images/train/000001.jpg ...         file_name in the JSON is relative to images/<split>/
    images/val/...

Image ids are ``1..N`` over both splits; annotation ids are ``1..`` per file. Categories are six
real COCO categories (:data:`SYNTHETIC_CATEGORIES`), so the 80-class head, the COCO label map and
the COCO evaluators work unchanged. Each category is a shape and a colour: two pairs share a shape
and differ in colour, so neither cue alone suffices. Images are 320..640 px on the long side
(default), landscape or portrait, on a smooth random background with pixel noise and unannotated
grey distractor shapes. Objects span COCO's small / medium / large area ranges, overlap (every
annotated object stays at least half visible; its box and area are those of its visible pixels),
in every 12 consecutive images one is empty and two hold an ``iscrowd=1`` cluster of small
same-category objects (besides their other objects).

``difficulty="easy"`` draws a smaller problem for short CPU runs (the demo and seed studies): only
the first three categories (distinct shape and colour), one to three large objects per image, no
distractors, crowds, empty images or deliberate overlaps.

Image ``i`` depends only on ``(seed, i)`` and the options, so the same call writes byte-identical
files (given the same Pillow build, which bundles its libjpeg).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sparse_rcnn.platform.errors import InputError
from sparse_rcnn.platform.output_files import check_output_folder

from .categories import COCO_CATEGORY_IDS, COCO_CLASSES


@dataclass(frozen=True)
class ShapeCategory:
    category_id: int  # a real COCO category id
    shape: str  # "ellipse" | "rectangle" | "triangle" | "ring"
    colour: tuple[int, int, int]  # RGB
    aspect: float  # typical height / width

    @property
    def name(self) -> str:
        return COCO_CLASSES[COCO_CATEGORY_IDS.index(self.category_id)]


SYNTHETIC_CATEGORIES: tuple[ShapeCategory, ...] = (
    ShapeCategory(1, "ellipse", (215, 45, 45), 1.8),  # person
    ShapeCategory(3, "rectangle", (45, 85, 215), 0.6),  # car
    ShapeCategory(17, "triangle", (45, 175, 65), 1.0),  # cat
    ShapeCategory(37, "ring", (240, 150, 25), 1.0),  # sports ball
    ShapeCategory(44, "rectangle", (225, 205, 45), 1.8),  # bottle: car's shape, other colour
    ShapeCategory(62, "triangle", (195, 60, 195), 1.0),  # chair: cat's shape, other colour
)

CYCLE = 12  # image kinds repeat with this period, at a seed-dependent phase
EMPTY_SLOTS = (0,)
CROWD_SLOTS = (4, 8)
OVERLAP_PROB = 0.35
MIN_VISIBLE = 0.5  # fraction of an annotated object's pixels that must stay visible
JPEG_QUALITY = 90
DIFFICULTIES = ("standard", "easy")
MIN_SIDE, MAX_SIDE = 64, 4096  # bounds of min_size/max_size (long side, px)
EASY_CATEGORIES = 3  # the first three: ellipse/red, rectangle/blue, triangle/green


@dataclass(frozen=True)
class SyntheticDataset:
    """Where :func:`make_synthetic` wrote each split."""

    root: Path
    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path
    num_train: int
    num_val: int


def split_paths(root: str | Path, split: str) -> tuple[Path, Path]:
    """``(annotation file, image folder)`` of ``split`` ("train" or "val") under ``root``."""
    root = Path(root)
    return root / "annotations" / f"instances_{split}.json", root / "images" / split


def _shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """bool ``(h, w)`` mask of ``shape`` inscribed in an ``h x w`` box (pixel centres)."""
    v = (np.arange(h) + 0.5)[:, None] / h * 2 - 1  # (h, 1) in [-1, 1]
    u = (np.arange(w) + 0.5)[None, :] / w * 2 - 1  # (1, w)
    r2 = u**2 + v**2
    if shape == "rectangle":
        return np.ones((h, w), dtype=bool)
    if shape == "ellipse":
        return r2 <= 1
    if shape == "ring":
        return (r2 <= 1) & (r2 >= 0.3)
    if shape == "triangle":
        return v >= 2 * np.abs(u) - 1
    raise ValueError(f"unknown shape {shape!r}")


class _Canvas:
    """An image being drawn, with the id of the instance that owns each pixel (0: none)."""

    def __init__(self, rng: np.random.Generator, h: int, w: int):
        coarse = rng.uniform(50, 200, (3, int(rng.integers(3, 8)), 5)).astype(np.float32)
        rows = _linear_weights(coarse.shape[1], h)  # (h, ky)
        cols = _linear_weights(coarse.shape[2], w)  # (w, kx)
        left = (rows @ coarse).reshape(3 * h, -1)  # (3 * h, kx)
        self.pixels = np.ascontiguousarray((left @ cols.T).reshape(3, h, w))  # (3, h, w) float32
        self.owner = np.zeros((h, w), dtype=np.int32)
        self.full: dict[int, int] = {}  # instance id -> pixels drawn
        self.visible: dict[int, int] = {}  # instance id -> pixels it still owns
        self.extent: dict[int, tuple[int, int, int, int]] = {}  # id -> (y0, x0, y1, x1) drawn
        self.h, self.w = h, w

    def try_place(self, iid: int, mask: np.ndarray, y: int, x: int, colour: np.ndarray) -> bool:
        """Draw ``mask`` at ``(y, x)`` for instance ``iid`` unless that would leave another
        instance less than :data:`MIN_VISIBLE` visible; returns whether it was drawn."""
        region = self.owner[y : y + mask.shape[0], x : x + mask.shape[1]]
        covered = np.bincount(region[mask])  # (max id + 1,) pixels taken from each owner
        for other, n in enumerate(covered[1:].tolist(), start=1):
            if n and other != iid and self.visible[other] - n < MIN_VISIBLE * self.full[other]:
                return False
        for other, n in enumerate(covered[1:].tolist(), start=1):
            self.visible[other] -= n
        self.paint(mask, y, x, colour)
        region[mask] = iid
        drawn = int(mask.sum())
        self.full[iid] = self.full.get(iid, 0) + drawn
        self.visible[iid] = self.visible.get(iid, 0) + drawn
        y0, x0, y1, x1 = self.extent.get(iid, (y, x, y, x))
        self.extent[iid] = (
            min(y0, y),
            min(x0, x),
            max(y1, y + mask.shape[0]),
            max(x1, x + mask.shape[1]),
        )
        return True

    def paint(self, mask: np.ndarray, y: int, x: int, colour: np.ndarray) -> None:
        self.pixels[:, y : y + mask.shape[0], x : x + mask.shape[1]][:, mask] = colour[:, None]


def _linear_weights(k: int, n: int) -> np.ndarray:
    """float32 ``(n, k)``: linear interpolation of ``k`` evenly spaced samples onto ``n`` px."""
    pos = np.linspace(0, k - 1, n)
    return np.stack([np.interp(pos, np.arange(k), e) for e in np.eye(k)], axis=1).astype(np.float32)


def _object_size(rng: np.random.Generator, h: int, w: int, aspect: float) -> tuple[int, int]:
    """``(bh, bw)`` of a box whose sqrt-area falls in COCO's small, medium or large range."""
    large_max = min(0.75 * min(h, w), 260.0)
    kind = rng.choice(3, p=[0.3, 0.45, 0.25])
    if kind == 2 and large_max <= 96:
        kind = 1
    lo, hi = [(8.0, 32.0), (32.0, 96.0), (96.0, large_max)][kind]
    side = rng.uniform(lo, hi)
    a = aspect * float(np.exp(rng.uniform(-0.35, 0.35)))
    bh = int(np.clip(round(side * np.sqrt(a)), 4, h - 2))
    bw = int(np.clip(round(side / np.sqrt(a)), 4, w - 2))
    return bh, bw


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int) -> np.ndarray:
    jittered = np.array(colour) + rng.integers(-amount, amount + 1, 3)
    return np.clip(jittered, 0, 255).astype(np.float32)


def _encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of a uint8 ``(3, H, W)`` RGB image (Pillow: no torch import for the CLI)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    return buffer.getvalue()


def dataset_categories(difficulty: str = "standard") -> tuple[ShapeCategory, ...]:
    """The categories a dataset of this difficulty draws from."""
    if difficulty not in DIFFICULTIES:
        raise InputError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    return SYNTHETIC_CATEGORIES[:EASY_CATEGORIES] if difficulty == "easy" else SYNTHETIC_CATEGORIES


def _render_easy(
    rng: np.random.Generator, canvas: _Canvas
) -> list[tuple[int, ShapeCategory, bool]]:
    """Place one to three large objects (side 30-60 % of the short side) without overlap
    attempts beyond what :meth:`_Canvas.try_place` allows."""
    h, w = canvas.h, canvas.w
    instances = []
    for _ in range(int(rng.integers(1, 4))):
        cat = SYNTHETIC_CATEGORIES[int(rng.integers(EASY_CATEGORIES))]
        side = rng.uniform(0.3, 0.6) * min(h, w)
        a = cat.aspect * float(np.exp(rng.uniform(-0.2, 0.2)))
        bh = int(np.clip(round(side * np.sqrt(a)), 8, h - 2))
        bw = int(np.clip(round(side / np.sqrt(a)), 8, w - 2))
        iid = len(instances) + 1
        for _ in range(8):
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            if canvas.try_place(iid, _shape_mask(cat.shape, bh, bw), y, x,
                                _jitter(rng, cat.colour, 20)):  # fmt: skip
                instances.append((iid, cat, False))
                break
    return instances


def render_image(
    seed: int, index: int, min_size: int = 320, max_size: int = 640, difficulty: str = "standard"
) -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of the dataset for ``seed``: uint8 ``(3, H, W)`` RGB and its annotations
    (``category_id``, ``bbox`` [x, y, w, h] of the visible pixels, ``area`` = visible pixel
    count, ``iscrowd``), without ids."""
    dataset_categories(difficulty)  # validates
    rng = np.random.default_rng([seed, index])
    slot = (index + int(np.random.default_rng([seed]).integers(CYCLE))) % CYCLE
    long_side = int(rng.integers(min_size, max_size + 1))
    short_side = int(round(long_side * rng.uniform(0.6, 0.85)))
    h, w = (short_side, long_side) if rng.random() < 0.6 else (long_side, short_side)
    canvas = _Canvas(rng, h, w)
    if difficulty == "easy":
        return _finish(rng, canvas, _render_easy(rng, canvas))

    for _ in range(int(rng.integers(0, 4))):  # unannotated grey distractors, behind everything
        bh, bw = _object_size(rng, h, w, 1.0)
        shape = SYNTHETIC_CATEGORIES[int(rng.integers(len(SYNTHETIC_CATEGORIES)))].shape
        grey = (np.full(3, rng.uniform(70, 180)) + rng.uniform(-12, 12, 3)).astype(np.float32)
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        canvas.paint(_shape_mask(shape, bh, bw), y, x, grey)

    instances: list[tuple[int, ShapeCategory, bool]] = []  # (id, category, iscrowd)
    boxes: list[tuple[int, int, int, int]] = []  # (y, x, bh, bw) of placed non-crowd objects
    if slot not in EMPTY_SLOTS:
        if slot in CROWD_SLOTS:
            cat = SYNTHETIC_CATEGORIES[int(rng.integers(len(SYNTHETIC_CATEGORIES)))]
            rh, rw = (
                min(int(rng.integers(60, 141)), h - 20),
                min(int(rng.integers(60, 141)), w - 20),
            )
            ry, rx = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
            iid = len(instances) + 1
            for _ in range(int(rng.integers(6, 13))):
                side = int(rng.integers(8, 19))
                y, x = (
                    ry + int(rng.integers(0, rh - side + 1)),
                    rx + int(rng.integers(0, rw - side + 1)),
                )
                mask = _shape_mask(cat.shape, side, side)
                canvas.try_place(iid, mask, y, x, _jitter(rng, cat.colour, 25))
            instances.append((iid, cat, True))
        for _ in range(min(1 + int(rng.poisson(3.5)), 12)):
            cat = SYNTHETIC_CATEGORIES[int(rng.integers(len(SYNTHETIC_CATEGORIES)))]
            bh, bw = _object_size(rng, h, w, cat.aspect)
            mask = _shape_mask(cat.shape, bh, bw)
            colour = _jitter(rng, cat.colour, 30)
            iid = len(instances) + 1
            for _ in range(8):
                if boxes and rng.random() < OVERLAP_PROB:  # centre inside an earlier object
                    oy, ox, oh, ow = boxes[int(rng.integers(len(boxes)))]
                    cy, cx = oy + rng.uniform(0, oh), ox + rng.uniform(0, ow)
                    y = int(np.clip(round(cy - bh / 2), 0, h - bh))
                    x = int(np.clip(round(cx - bw / 2), 0, w - bw))
                else:
                    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
                if canvas.try_place(iid, mask, y, x, colour):
                    instances.append((iid, cat, False))
                    boxes.append((y, x, bh, bw))
                    break
    return _finish(rng, canvas, instances)


def _finish(
    rng: np.random.Generator, canvas: _Canvas, instances: list[tuple[int, ShapeCategory, bool]]
) -> tuple[np.ndarray, list[dict]]:
    """Add pixel noise to the canvas and measure each instance's visible box and area."""
    h, w = canvas.h, canvas.w
    noise = rng.integers(-12, 13, (3, h, w), dtype=np.int8)  # uniform, std ~7 grey levels
    image = canvas.pixels + noise  # (3, h, w) float32
    np.clip(image, 0, 255, out=image)
    image = image.astype(np.uint8)
    anns = []
    for iid, cat, crowd in instances:
        ey0, ex0, ey1, ex1 = canvas.extent[iid]
        ys, xs = np.nonzero(canvas.owner[ey0:ey1, ex0:ex1] == iid)
        if ys.size == 0:
            continue
        x0, y0 = int(xs.min()) + ex0, int(ys.min()) + ey0
        x1, y1 = int(xs.max()) + 1 + ex0, int(ys.max()) + 1 + ey0
        anns.append(
            {
                "category_id": cat.category_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": int(ys.size),
                "iscrowd": int(crowd),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
            }
        )
    return image, anns


def make_synthetic(
    root: str | Path,
    num_images: int,
    seed: int,
    *,
    val_fraction: float = 0.2,
    min_size: int = 320,
    max_size: int = 640,
    difficulty: str = "standard",
    overwrite: bool = False,
) -> SyntheticDataset:
    """Write the dataset (layout in the module docstring) and return its paths.

    ``min_size``/``max_size`` bound the long side in px; ``difficulty`` is "standard" or "easy"
    (module docstring). Raises ``FileExistsError`` when
    ``root`` already holds one and ``overwrite`` is false; with ``overwrite`` only the two
    annotation files and the two image folders are replaced. Bad options raise
    :class:`InputError`; a ``root`` that is a file, lies under a file or cannot be written
    raises :class:`~sparse_rcnn.platform.errors.OutputPathError`, both before anything is
    written or removed.
    """
    if num_images < 1:
        raise InputError(f"num_images must be >= 1, got {num_images}")
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not MIN_SIDE <= min_size <= max_size <= MAX_SIDE:
        raise InputError(
            f"need {MIN_SIDE} <= min_size <= max_size <= {MAX_SIDE}, got {min_size} and {max_size}"
        )
    cats = dataset_categories(difficulty)
    root = Path(root)
    check_output_folder(root)
    paths = {s: split_paths(root, s) for s in ("train", "val")}
    existing = [p for ann, img in paths.values() for p in (ann, img) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds a dataset ({existing[0]})")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    num_val = int(round(num_images * val_fraction))
    if val_fraction > 0 and num_images >= 2:
        num_val = min(max(num_val, 1), num_images - 1)
    perm = np.random.default_rng([seed, 2**32]).permutation(num_images)
    val_indices = set(perm[:num_val].tolist())

    categories = [{"id": c.category_id, "name": c.name, "supercategory": c.shape} for c in cats]
    splits = {
        s: {"images": [], "annotations": [], "categories": categories} for s in ("train", "val")
    }
    for _, img_dir in paths.values():
        img_dir.mkdir(parents=True, exist_ok=True)
    for index in range(num_images):
        split = "val" if index in val_indices else "train"
        image, anns = render_image(seed, index, min_size, max_size, difficulty)
        image_id = index + 1
        file_name = f"{image_id:06d}.jpg"
        (paths[split][1] / file_name).write_bytes(_encode_jpeg(image))
        out = splits[split]
        out["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": image.shape[1],
                "width": image.shape[2],
            }
        )
        for ann in anns:
            out["annotations"].append(
                {"id": len(out["annotations"]) + 1, "image_id": image_id, **ann}
            )

    for split, data in splits.items():
        info = {
            "description": "sparse-rcnn synthetic shapes",
            "version": "1",
            "split": split,
            "seed": seed,
            "num_images": num_images,
            "val_fraction": val_fraction,
            "min_size": min_size,
            "max_size": max_size,
            "difficulty": difficulty,
        }
        ann_file = paths[split][0]
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps({"info": info, "licenses": [], **data}) + "\n")
    return SyntheticDataset(
        root=root,
        train_ann=paths["train"][0],
        train_images=paths["train"][1],
        val_ann=paths["val"][0],
        val_images=paths["val"][1],
        num_train=num_images - num_val,
        num_val=num_val,
    )
