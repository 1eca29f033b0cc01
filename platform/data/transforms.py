"""Deterministic image transforms with mmdetection semantics (test pipeline and shared pieces).

Conventions: images are ``(3, H, W)`` tensors, RGB; boxes are absolute-pixel ``xyxy`` floats.
Sizes are ``(height, width)`` unless a name says otherwise. mmdetection's scales are written
``(long, short)``, e.g. ``(1333, 800)``: the short side is scaled to at most ``short`` and the
long side to at most ``long``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# ImageNet statistics in RGB order on the 0..255 scale (all reference configs).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ImageMeta:
    """Where an input tensor came from: what post-processing needs to map boxes back.

    ``scale_factor`` is ``(w_scale, h_scale) = (new_w / orig_w, new_h / orig_h)``. Every
    pipeline is, per axis, an affine map from the file's pixels to the transformed image's:
    ``u = scale * p + offset`` (``offset`` is ``(x, y)`` in transformed pixels, non-zero only
    after a crop), followed by ``x -> size[1] - u`` when ``flipped``. For a cropped image
    ``scale_factor`` is the product of both resizes (mmdetection keeps only the last one).
    """

    image_id: int
    orig_size: tuple[int, int]  # (H, W) of the decoded file
    size: tuple[int, int]  # (H, W) after resize/crop, before batch padding
    scale_factor: tuple[float, float]
    flipped: bool = False
    offset: tuple[float, float] = (0.0, 0.0)


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio target size ``(new_h, new_w)`` for a ``(long, short)`` scale (mmcv rescale).

    factor = min(long / max(h, w), short / min(h, w)); each side is rounded half up.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of a ``(3, H, W)`` image to ``size=(h, w)`` without antialiasing
    (OpenCV's INTER_LINEAR, which mmcv uses). A ``uint8`` input stays ``uint8`` (rounded)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    dtype = image.dtype
    out = F.interpolate(
        image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=False
    )[0]
    if dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out


def normalize(
    image: Tensor,
    mean: tuple[float, float, float] = PIXEL_MEAN,
    std: tuple[float, float, float] = PIXEL_STD,
) -> Tensor:
    """``(3, H, W)`` RGB 0..255 -> float32 ``(x - mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (image.float() - m) / s


def test_transform(
    image: Tensor, image_id: int, scale: tuple[int, int] = (1333, 800)
) -> tuple[Tensor, ImageMeta]:
    """The reference test pipeline: keep-ratio resize to ``scale``, normalise. No flip, no pad
    (padding happens per batch in :func:`pad_batch`)."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    new_h, new_w = rescale_size(h, w, scale)
    out = normalize(resize_image(image, (new_h, new_w)))
    meta = ImageMeta(image_id, (h, w), (new_h, new_w), (new_w / w, new_h / h))
    return out, meta


def pad_batch(images: list[Tensor], size_divisor: int = 32) -> tuple[Tensor, Tensor]:
    """Stack normalised ``(3, h_i, w_i)`` images into ``(B, 3, H, W)``, zero-padded at the
    bottom/right to a common size that is a multiple of ``size_divisor``.

    Returns the batch and ``image_sizes`` ``(B, 2)`` int64 of the unpadded ``(h_i, w_i)``.
    """
    if not images:
        raise ValueError("pad_batch needs at least one image")
    sizes = torch.tensor([[int(im.shape[-2]), int(im.shape[-1])] for im in images])
    hp, wp = (int(v) for v in sizes.max(0).values)
    hp = -(-hp // size_divisor) * size_divisor
    wp = -(-wp // size_divisor) * size_divisor
    batch = images[0].new_zeros((len(images), 3, hp, wp))
    for i, im in enumerate(images):
        batch[i, :, : im.shape[-2], : im.shape[-1]] = im
    return batch, sizes


def boxes_to_original(boxes: Tensor, meta: ImageMeta, clip: bool = False) -> Tensor:
    """Map ``(N, 4)`` xyxy boxes in the transformed image back to the original file's pixels:
    undo a horizontal flip, subtract the crop offset, divide by the scale factors (the inverse
    of the map described in :class:`ImageMeta`); optionally clip to the image."""
    out = boxes.clone()
    if meta.flipped:
        w = meta.size[1]
        out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    ox, oy = meta.offset
    ws, hs = meta.scale_factor
    out = (out - out.new_tensor([ox, oy, ox, oy])) / out.new_tensor([ws, hs, ws, hs])
    if clip:
        h, w = meta.orig_size
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out
