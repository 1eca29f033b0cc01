"""Training augmentation pipelines with mmdetection semantics (spec 2.6), plus the test pipeline.

One explicit registry, :data:`PIPELINES`, maps a name to a pipeline:

- ``single_scale`` (1x configs): keep-ratio resize to ``(1333, 800)``, horizontal flip p=0.5.
- ``multiscale`` (3x configs): keep-ratio resize to a scale drawn uniformly from
  ``(1333, s)``, ``s`` in 480..800 step 32; horizontal flip p=0.5.
- ``crop_multiscale`` (300-proposal configs, "DETR augmentation"): flip p=0.5 *first*, then with
  probability 1/2 either the multi-scale resize, or a resize with short side in {400, 500, 600}
  followed by an ``absolute_range`` random crop of 384..600 px per side and the multi-scale resize.
- ``test``: keep-ratio resize to ``(1333, 800)``, no randomness.

Every pipeline ends with RGB mean/std normalisation; padding happens per batch
(:func:`~sparse_rcnn.platform.data.transforms.pad_batch`). Images are ``(3, H, W)`` RGB;
boxes are absolute-pixel ``xyxy`` float32 in the current image's frame. After every resize,
boxes are clipped to the image (``bbox_clip_border``) and kept even when that makes them empty,
as mmdetection does; only the crop removes boxes (those left with zero width or height).

Randomness: every draw comes from the ``numpy.random.Generator`` passed in, in mmdetection's
draw order. :func:`sample_rng` derives it from ``(aug_seed, epoch, image_id)`` only, so an
image's augmentation is the same whatever the worker count, the data order or its seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch import Tensor

from .transforms import ImageMeta, normalize, rescale_size, resize_image

Scale = tuple[int, int]  # mmdetection's (long, short) keep-ratio scale

SINGLE_SCALE: Scale = (1333, 800)
MULTISCALE_SCALES: tuple[Scale, ...] = tuple((1333, s) for s in range(480, 801, 32))
CROP_PRE_SCALES: tuple[Scale, ...] = ((1333, 400), (1333, 500), (1333, 600))
CROP_SIZE_RANGE: tuple[int, int] = (384, 600)
FLIP_PROB = 0.5
CROP_BRANCH_PROB = 0.5


@dataclass(frozen=True)
class InputSizes:
    """The pixel sizes a pipeline uses; the defaults are the reference configs'.

    :meth:`scaled` shrinks every size by one ratio, so a CPU-sized configuration (the ``tiny``
    preset) keeps the reference's proportions: same number of multi-scale steps, crop range
    and pre-crop scales relative to the image.
    """

    single: Scale = SINGLE_SCALE
    multiscale: tuple[Scale, ...] = MULTISCALE_SCALES
    crop_pre: tuple[Scale, ...] = CROP_PRE_SCALES
    crop_range: tuple[int, int] = CROP_SIZE_RANGE

    @classmethod
    def scaled(cls, ratio: float) -> InputSizes:
        if not 0 < ratio <= 4:
            raise ValueError(f"input size ratio must be in (0, 4], got {ratio}")

        def r(v: int) -> int:
            return max(1, int(v * ratio + 0.5))

        def rs(scale: Scale) -> Scale:
            return (r(scale[0]), r(scale[1]))

        return cls(
            single=rs(SINGLE_SCALE),
            multiscale=tuple(rs(s) for s in MULTISCALE_SCALES),
            crop_pre=tuple(rs(s) for s in CROP_PRE_SCALES),
            crop_range=(r(CROP_SIZE_RANGE[0]), r(CROP_SIZE_RANGE[1])),
        )


DEFAULT_SIZES = InputSizes()


class Augmented(NamedTuple):
    """One transformed sample.

    ``image``: float32 ``(3, h, w)`` normalised; ``boxes``: float32 ``(M, 4)`` absolute xyxy in
    that image; ``labels``: int64 ``(M,)`` (the input labels of the boxes that survived);
    ``meta``: the map back to the file's pixels.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    meta: ImageMeta


# (image uint8 (3, H, W), boxes (M, 4) xyxy, labels (M,), rng, image_id) -> Augmented
Pipeline = Callable[[Tensor, Tensor, Tensor, np.random.Generator, int], Augmented]


def sample_rng(aug_seed: int, epoch: int, image_id: int) -> np.random.Generator:
    """The generator for one image in one epoch: a function of these three numbers only."""
    if aug_seed < 0 or epoch < 0:
        raise ValueError(f"aug_seed and epoch must be >= 0, got {aug_seed} and {epoch}")
    return np.random.default_rng([int(aug_seed), int(epoch), int(image_id) % 2**64])


# --- pure box geometry -------------------------------------------------------------------------


def resize_boxes(boxes: Tensor, scale_factor: tuple[float, float], size: tuple[int, int]) -> Tensor:
    """Scale ``(M, 4)`` xyxy boxes by ``(w_scale, h_scale)`` and clip to ``size=(h, w)``."""
    sx, sy = scale_factor
    out = boxes * boxes.new_tensor([sx, sy, sx, sy])
    out[:, 0::2] = out[:, 0::2].clamp(0, size[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, size[0])
    return out


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Mirror ``(M, 4)`` xyxy boxes in an image of ``width`` px: ``x -> width - x``."""
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def crop_boxes(boxes: Tensor, top: int, left: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Boxes in the crop window ``[left, left + w) x [top, top + h)`` with ``size=(h, w)``:
    shifted by the window's origin, clipped to it; boxes left with zero width or height are
    removed. Returns the kept ``(K, 4)`` boxes and the ``(M,)`` bool mask of kept inputs."""
    out = boxes - boxes.new_tensor([left, top, left, top])
    out[:, 0::2] = out[:, 0::2].clamp(0, size[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, size[0])
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep], keep


def crop_window(
    size: tuple[int, int], rng: np.random.Generator, crop_range: tuple[int, int] = CROP_SIZE_RANGE
) -> tuple[int, int, int, int]:
    """mmdetection's ``RandomCrop(crop_type='absolute_range')`` draw for an image of
    ``size=(h, w)``: crop height uniform in ``[min(h, lo), min(h, hi)]``, then width likewise,
    then the top and left offsets uniform over the margin. Returns ``(top, left, ch, cw)``."""
    lo, hi = crop_range
    if not 0 < lo <= hi:
        raise ValueError(f"crop_range must satisfy 0 < low <= high, got {crop_range}")
    h, w = size
    ch = int(rng.integers(min(h, lo), min(h, hi) + 1))
    cw = int(rng.integers(min(w, lo), min(w, hi) + 1))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


# --- a sample in flight, with the affine map from the file's pixels ------------------------------


@dataclass
class _Work:
    image: Tensor  # (3, H, W) uint8
    boxes: Tensor  # (M, 4) xyxy float32
    labels: Tensor  # (M,) int64
    scale: list[float]  # [ax, ay]: current = a * file + b, per axis; ax < 0 once flipped
    shift: list[float]  # [bx, by]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def resize(self, scale: Scale) -> None:
        h, w = self.size
        new_h, new_w = rescale_size(h, w, scale)
        sx, sy = new_w / w, new_h / h
        self.image = resize_image(self.image, (new_h, new_w))
        self.boxes = resize_boxes(self.boxes, (sx, sy), (new_h, new_w))
        self.scale = [self.scale[0] * sx, self.scale[1] * sy]
        self.shift = [self.shift[0] * sx, self.shift[1] * sy]

    def flip(self) -> None:
        w = self.size[1]
        self.image = self.image.flip(-1)
        self.boxes = flip_boxes(self.boxes, w)
        self.scale[0], self.shift[0] = -self.scale[0], w - self.shift[0]

    def crop(self, top: int, left: int, ch: int, cw: int) -> None:
        self.image = self.image[:, top : top + ch, left : left + cw]
        self.boxes, keep = crop_boxes(self.boxes, top, left, (ch, cw))
        self.labels = self.labels[keep]
        self.shift = [self.shift[0] - left, self.shift[1] - top]

    def finish(self, image_id: int, orig_size: tuple[int, int]) -> Augmented:
        h, w = self.size
        flipped = self.scale[0] < 0
        offset_x = w - self.shift[0] if flipped else self.shift[0]
        meta = ImageMeta(
            image_id=image_id,
            orig_size=orig_size,
            size=(h, w),
            scale_factor=(abs(self.scale[0]), self.scale[1]),
            flipped=flipped,
            offset=(float(offset_x), float(self.shift[1])),
        )
        return Augmented(normalize(self.image), self.boxes, self.labels, meta)


def _start(image: Tensor, boxes: Tensor, labels: Tensor) -> _Work:
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"expected boxes (M, 4) and labels (M,), got {tuple(boxes.shape)} and "
            f"{tuple(labels.shape)}"
        )
    return _Work(image, boxes.float(), labels.long(), [1.0, 1.0], [0.0, 0.0])


def _choice(rng: np.random.Generator, scales: tuple[Scale, ...]) -> Scale:
    return scales[int(rng.integers(len(scales)))]


# --- the pipelines -----------------------------------------------------------------------------


def single_scale(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    rng: np.random.Generator,
    image_id: int,
    sizes: InputSizes = DEFAULT_SIZES,
) -> Augmented:
    """1x: Resize (1333, 800) keep-ratio, RandomFlip 0.5, Normalize."""
    work = _start(image, boxes, labels)
    orig = work.size
    work.resize(sizes.single)
    if rng.random() < FLIP_PROB:
        work.flip()
    return work.finish(image_id, orig)


def multiscale(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    rng: np.random.Generator,
    image_id: int,
    sizes: InputSizes = DEFAULT_SIZES,
) -> Augmented:
    """3x: Resize to one of :data:`MULTISCALE_SCALES` keep-ratio, RandomFlip 0.5, Normalize."""
    work = _start(image, boxes, labels)
    orig = work.size
    work.resize(_choice(rng, sizes.multiscale))
    if rng.random() < FLIP_PROB:
        work.flip()
    return work.finish(image_id, orig)


def crop_multiscale(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    rng: np.random.Generator,
    image_id: int,
    sizes: InputSizes = DEFAULT_SIZES,
) -> Augmented:
    """300-proposal crop policy: RandomFlip 0.5; then, each with probability 1/2, either the
    multi-scale resize, or resize to one of :data:`CROP_PRE_SCALES`, random crop
    (:func:`crop_window`, a crop without boxes is kept) and the multi-scale resize."""
    work = _start(image, boxes, labels)
    orig = work.size
    if rng.random() < FLIP_PROB:
        work.flip()
    if rng.random() < CROP_BRANCH_PROB:
        work.resize(_choice(rng, sizes.crop_pre))
        work.crop(*crop_window(work.size, rng, sizes.crop_range))
    work.resize(_choice(rng, sizes.multiscale))
    return work.finish(image_id, orig)


def inference(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    rng: np.random.Generator | None,
    image_id: int,
    sizes: InputSizes = DEFAULT_SIZES,
) -> Augmented:
    """Test: Resize (1333, 800) keep-ratio, Normalize; ``rng`` is not used. Same image and meta
    as :func:`~sparse_rcnn.platform.data.transforms.test_transform`, plus the boxes."""
    work = _start(image, boxes, labels)
    orig = work.size
    work.resize(sizes.single)
    return work.finish(image_id, orig)


PIPELINES: dict[str, Pipeline] = {
    "single_scale": single_scale,
    "multiscale": multiscale,
    "crop_multiscale": crop_multiscale,
    "test": inference,
}


def get_pipeline(name: str, sizes: InputSizes | None = None) -> Pipeline:
    """The pipeline called ``name`` (with ``sizes`` instead of the reference sizes, if given);
    an unknown name raises ``ValueError`` listing the choices."""
    try:
        pipeline = PIPELINES[name]
    except KeyError:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {sorted(PIPELINES)}") from None
    return pipeline if sizes is None else functools.partial(pipeline, sizes=sizes)
