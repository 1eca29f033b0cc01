"""Resize sizes against hand-computed mmcv values, padding, box mapping back to the file."""

from __future__ import annotations

import pytest
import torch

from sparse_rcnn.platform.data import transforms as T


@pytest.mark.parametrize(
    ("hw", "scale", "expected"),
    [
        # factor = min(1333 / long, 800 / short); each side int(x * factor + 0.5)
        ((480, 640), (1333, 800), (800, 1067)),  # 640 * 5/3 = 1066.67
        ((375, 500), (1333, 800), (800, 1067)),  # 500 * 2.1333 = 1066.67
        ((640, 427), (1333, 800), (1199, 800)),  # portrait: 640 * 800/427 = 1199.06
        ((300, 1000), (1333, 800), (400, 1333)),  # long side caps: 300 * 1.333 = 399.9
        ((200, 1000), (1333, 800), (267, 1333)),  # 266.6 -> 267
        ((800, 1333), (1333, 800), (800, 1333)),  # already at scale
        ((375, 500), (1333, 512), (512, 683)),  # a multi-scale short side
        ((480, 640), (800, 1333), (800, 1067)),  # (short, long) order gives the same
        ((2, 5), (1333, 1), (1, 3)),  # 2.5 rounds half up (Python's round gives 2)
    ],
)
def test_rescale_size_matches_mmcv(hw, scale, expected):
    assert T.rescale_size(*hw, scale) == expected


def test_resize_image_size_and_dtype():
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    out = T.resize_image(image, (96, 128))
    assert out.shape == (3, 96, 128) and out.dtype == torch.uint8
    flat = torch.full((3, 10, 10), 77, dtype=torch.uint8)
    assert torch.equal(
        T.resize_image(flat, (23, 31)), torch.full((3, 23, 31), 77, dtype=torch.uint8)
    )


def test_normalize_uses_rgb_imagenet_statistics():
    image = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(T.normalize(image), torch.zeros(3, 2, 2), atol=1e-6)
    one_std = torch.tensor([123.675 + 58.395, 116.28 + 57.12, 103.53 + 57.375]).view(3, 1, 1)
    assert torch.allclose(T.normalize(one_std), torch.ones(3, 1, 1), atol=1e-5)


def test_pad_batch_pads_to_multiple_of_32_and_keeps_sizes():
    a = torch.full((3, 100, 150), 1.0)
    b = torch.full((3, 70, 200), 2.0)
    batch, sizes = T.pad_batch([a, b], 32)
    assert batch.shape == (2, 3, 128, 224)
    assert sizes.tolist() == [[100, 150], [70, 200]]
    assert torch.equal(batch[0, :, :100, :150], a) and torch.equal(batch[1, :, :70, :200], b)
    assert batch[0, :, 100:].abs().sum() == 0 and batch[0, :, :, 150:].abs().sum() == 0
    assert batch[1, :, 70:].abs().sum() == 0 and batch[1, :, :, 200:].abs().sum() == 0
    exact, _ = T.pad_batch([torch.ones(3, 64, 96)], 32)
    assert exact.shape == (1, 3, 64, 96)


def test_test_transform_meta():
    image = torch.zeros((3, 480, 640), dtype=torch.uint8)
    out, meta = T.test_transform(image, image_id=9)
    assert out.shape == (3, 800, 1067) and out.dtype == torch.float32
    assert meta.orig_size == (480, 640) and meta.size == (800, 1067)
    assert meta.scale_factor == pytest.approx((1067 / 640, 800 / 480))
    assert not meta.flipped and meta.offset == (0.0, 0.0)


def test_boxes_to_original_undoes_flip_scale_and_offset():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    meta = T.ImageMeta(1, (100, 200), (150, 400), (2.0, 1.5), flipped=True, offset=(-40.0, 6.0))
    # forward: u = 2 * x - 40 -> [-20, 20]; flipped x = 400 - u -> [380, 420]; y = 1.5 * y + 6
    transformed = torch.tensor([[380.0, 36.0, 420.0, 96.0]])
    assert torch.allclose(T.boxes_to_original(transformed, meta), boxes)
    clipped = T.boxes_to_original(torch.tensor([[0.0, 0.0, 1000.0, 1000.0]]), meta, clip=True)
    assert clipped.tolist() == [[0.0, 0.0, 200.0, 100.0]]
    assert T.boxes_to_original(torch.zeros((0, 4)), meta).shape == (0, 4)
